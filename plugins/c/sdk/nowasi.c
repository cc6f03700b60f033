/*
 * nowasi.c: keeps wasi-libc's stdio out of a plugin, so the module imports
 * nothing (the plugin runtime refuses any WASI import).
 *
 * wasi-libc's strtod reads through a string-backed FILE, and its stdio
 * objects register an exit hook and an error path that write to stderr and
 * close files, which are WASI calls. A plugin never exits and never prints,
 * so these two definitions, linked before libc, stop those objects from
 * being pulled in. Do not call printf-family functions in a plugin: they
 * would bring the imports back (the build then fails naming them).
 */
struct _IO_FILE;

void __stdio_exit_needed(void) {}

int fputs(const char *s, struct _IO_FILE *f) {
  (void)s;
  (void)f;
  return -1;
}
