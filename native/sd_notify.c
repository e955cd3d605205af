// sd_notify for Node: one datagram to the service manager's socket ($NOTIFY_SOCKET), sent by this
// process itself, so that a unit with NotifyAccess=main accepts it. Node's own sockets cannot send
// unix datagrams. Node-API only: the compiled addon loads in any Node that has NAPI_VERSION 8.
//
// notify(socketPath: string, message: string): void
//   socketPath: an absolute path, or '@name' for a socket in the abstract namespace (as sd_notify(3)).
//   Throws an Error with `errno` (positive) and `syscall` when the socket cannot take the message.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Throws an Error whose message and properties Node's own system errors would have.
static void throw_errno(napi_env env, int err, const char *syscall) {
  char text[256];
  napi_value message, error, value;
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(err));
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message) != napi_ok) return;
  if (napi_create_error(env, NULL, message, &error) != napi_ok) return;
  if (napi_create_int32(env, err, &value) == napi_ok) napi_set_named_property(env, error, "errno", value);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value) == napi_ok) napi_set_named_property(env, error, "syscall", value);
  napi_throw(env, error);
}

// A JS string argument as a malloc'd UTF-8 buffer; *len excludes the terminating NUL.
static char *string_arg(napi_env env, napi_value value, const char *name, size_t *len) {
  if (napi_get_value_string_utf8(env, value, NULL, 0, len) != napi_ok) {
    char text[64];
    snprintf(text, sizeof text, "%s must be a string", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", text);
    return NULL;
  }
  char *buf = malloc(*len + 1);
  if (buf == NULL) {
    throw_errno(env, ENOMEM, "malloc");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, buf, *len + 1, len);
  return buf;
}

static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "notify(socketPath, message)");
    return NULL;
  }
  size_t path_len, message_len;
  char *path = string_arg(env, argv[0], "socketPath", &path_len);
  if (path == NULL) return NULL;
  char *message = string_arg(env, argv[1], "message", &message_len);
  if (message == NULL) {
    free(path);
    return NULL;
  }

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  socklen_t addr_len = 0;
  int err = 0;
  const char *syscall = "sendto";
  // A file path keeps its terminating NUL inside sun_path; an abstract name ('@' becomes the leading
  // NUL) is exactly as long as it is, with no NUL after it.
  if (path[0] == '/' && path_len < sizeof addr.sun_path) {
    memcpy(addr.sun_path, path, path_len);
    addr_len = offsetof(struct sockaddr_un, sun_path) + path_len + 1;
  } else if (path[0] == '@' && path_len >= 2 && path_len <= sizeof addr.sun_path) {
    memcpy(addr.sun_path + 1, path + 1, path_len - 1);
    addr_len = offsetof(struct sockaddr_un, sun_path) + path_len;
  } else if (path[0] != '/' && path[0] != '@') {
    err = EAFNOSUPPORT;
  } else {
    err = path_len < 2 ? EINVAL : ENAMETOOLONG;
  }

  if (err == 0) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      syscall = "socket";
    } else {
      // Never block the event loop: a service manager too busy to take a message gets EAGAIN instead.
      ssize_t sent;
      do sent = sendto(fd, message, message_len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len);
      while (sent < 0 && errno == EINTR);
      if (sent < 0) err = errno;
      else if ((size_t)sent != message_len) err = EMSGSIZE;
      close(fd);
    }
  }
  free(path);
  free(message);
  if (err != 0) throw_errno(env, err, syscall);
  return NULL;
}

// native/durable_fs.c: the copy path's calls, in the same addon so that one file is built and shipped.
bool durable_fs_register(napi_env env, napi_value exports);

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "notify", NAPI_AUTO_LENGTH, notify, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "notify", fn) != napi_ok) return NULL;
  if (!durable_fs_register(env, exports)) return NULL;
  return exports;
}
