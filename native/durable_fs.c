// Two file-system calls Node does not offer, for the copy path (src/io/native-fs.ts):
//
// setDirect(fd: number, on: boolean): boolean
//   Turns O_DIRECT on or off for an open file (fcntl F_SETFL), so that a temp written through the page
//   cache is read back past it through the same descriptor instead of a second open and close. Returns
//   false where the filesystem refuses direct I/O (EINVAL); throws for any other error. Never blocks:
//   it only changes the open file's flags.
//
// renameNoReplace(from: string, to: string): Promise<void>
//   renameat2(RENAME_NOREPLACE) in the thread pool: `to` gets `from`'s file unless something already has
//   that name (rejects with EEXIST, nothing changed). One call where link + unlink took two. Rejects with
//   EINVAL (or ENOSYS) where the filesystem or the kernel has no such flag.
//
// Errors carry a positive `errno` and `syscall`, as sd_notify.c's do.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

static napi_value errno_error(napi_env env, int err, const char *syscall_name) {
  char text[256];
  napi_value message, error, value;
  snprintf(text, sizeof text, "%s: %s", syscall_name, strerror(err));
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message) != napi_ok) return NULL;
  if (napi_create_error(env, NULL, message, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, err, &value) == napi_ok) napi_set_named_property(env, error, "errno", value);
  if (napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &value) == napi_ok) napi_set_named_property(env, error, "syscall", value);
  return error;
}

static napi_value set_direct(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd;
  bool on;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setDirect(fd: number, on: boolean)");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  int err = 0;
  if (flags < 0) err = errno;
  else if (fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) < 0) err = errno;
  napi_value result;
  if (err == EINVAL && on) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  if (err != 0) {
    napi_value error = errno_error(env, err, "fcntl");
    if (error != NULL) napi_throw(env, error);
    return NULL;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

struct rename_work {
  napi_async_work work;
  napi_deferred deferred;
  char *from;
  char *to;
  int err;
};

static void rename_execute(napi_env env, void *data) {
  (void)env;
  struct rename_work *w = data;
  // Through syscall(2): glibc's wrapper is recent (2.28), and the kernel call is all that is needed.
  if (syscall(SYS_renameat2, AT_FDCWD, w->from, AT_FDCWD, w->to, RENAME_NOREPLACE) < 0) w->err = errno;
}

static void rename_complete(napi_env env, napi_status status, void *data) {
  struct rename_work *w = data;
  if (status != napi_ok && w->err == 0) w->err = ECANCELED;
  napi_value value;
  if (w->err == 0) {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, w->deferred, value);
  } else {
    value = errno_error(env, w->err, "renameat2");
    if (value == NULL) napi_get_undefined(env, &value);
    napi_reject_deferred(env, w->deferred, value);
  }
  napi_delete_async_work(env, w->work);
  free(w->from);
  free(w->to);
  free(w);
}

static char *path_arg(napi_env env, napi_value value) {
  size_t len;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return NULL;
  char *buf = malloc(len + 1);
  if (buf != NULL) napi_get_value_string_utf8(env, value, buf, len + 1, &len);
  return buf;
}

static napi_value rename_no_replace(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  struct rename_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (argc >= 2) {
    w->from = path_arg(env, argv[0]);
    w->to = path_arg(env, argv[1]);
  }
  if (w->from == NULL || w->to == NULL) {
    free(w->from);
    free(w->to);
    free(w);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "renameNoReplace(from: string, to: string)");
    return NULL;
  }
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok || napi_create_string_utf8(env, "renameNoReplace", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, rename_execute, rename_complete, w, &w->work) != napi_ok || napi_queue_async_work(env, w->work) != napi_ok) {
    // A promise made but never settled is dropped with this call's scope.
    free(w->from);
    free(w->to);
    free(w);
    napi_throw_error(env, NULL, "renameNoReplace: cannot queue the call");
    return NULL;
  }
  return promise;
}

/** Adds this file's functions to the addon's exports (called from the module's init in sd_notify.c). */
bool durable_fs_register(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "setDirect", NAPI_AUTO_LENGTH, set_direct, NULL, &fn) != napi_ok) return false;
  if (napi_set_named_property(env, exports, "setDirect", fn) != napi_ok) return false;
  if (napi_create_function(env, "renameNoReplace", NAPI_AUTO_LENGTH, rename_no_replace, NULL, &fn) != napi_ok) return false;
  if (napi_set_named_property(env, exports, "renameNoReplace", fn) != napi_ok) return false;
  return true;
}
