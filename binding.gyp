# The one native piece Shuttle builds itself: sd_notify over $NOTIFY_SOCKET (native/sd_notify.c), and two
# file-system calls of the copy path Node lacks (native/durable_fs.c).
# npm runs `node-gyp rebuild` for a package with this file at install time; the addon uses Node-API
# only, so the headers it is compiled against need not be those of the runtime that loads it.
{
  "targets": [
    {
      "target_name": "sd_notify",
      "sources": ["native/sd_notify.c", "native/durable_fs.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
