// Module resolution hooks for running a plugin's code in Node: the
// component's imports (`warden:…`, `wasi:…`) resolve to native-host.js.
const STUB = new URL('./native-host.js', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('warden:') || specifier.startsWith('wasi:')) {
    return { url: STUB, shortCircuit: true };
  }
  return next(specifier, context);
}
