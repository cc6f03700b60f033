// The entry point of every JavaScript plugin build (written by the builder
// next to the plugin): the plugin's own exports, except that an exception
// escaping one of them goes back to the host as the export's error, with its
// stack (each world's function returns result<_, string>), instead of trapping.
// A string thrown on purpose passes unchanged.
import * as plugin from "./plugin.js";

function message(e) {
  if (e instanceof Error) {
    const head = `${e.name}: ${e.message}`;
    return e.stack ? `${head}\n${e.stack}`.trimEnd() : head;
  }
  return typeof e === "string" ? e : String(e);
}

{{exports}}
