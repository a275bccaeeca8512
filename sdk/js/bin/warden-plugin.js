#!/usr/bin/env node
// `warden-plugin build [DIR] [--module app.js] [-o OUT]`: DIR/app.js into
// DIR/NAME.wasm, with DIR/warden.toml embedded as its manifest.
//
// esbuild bundles the app with this kit (the component's imports,
// `warden:…` and `wasi:…`, stay imports); componentize-js runs the bundle
// once at build time and snapshots SpiderMonkey with it; the manifest then
// goes into a top-level custom section named `warden:manifest`, which
// warden reads at load time.
import { realpathSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const KIT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

class BuildError extends Error {}

async function manifest(project) {
  const path = join(project, 'warden.toml');
  let text;
  try {
    text = await readFile(path);
  } catch (e) {
    throw new BuildError(`cannot read ${path}: ${e.code ?? e.message} (a plugin project keeps its manifest in warden.toml)`);
  }
  const { parse } = await import('smol-toml');
  let parsed;
  try {
    parsed = parse(text.toString('utf8'));
  } catch (e) {
    throw new BuildError(`${path}: ${e.message}`);
  }
  for (const key of ['name', 'kind']) {
    if (typeof parsed[key] !== 'string') {
      throw new BuildError(`${path}: \`${key}\` is missing; \`warden plugin check ${project}\` lists everything a manifest needs`);
    }
  }
  if (!['tool', 'role'].includes(parsed.kind)) {
    throw new BuildError(`${path}: kind ${JSON.stringify(parsed.kind)}: use "tool" or "role"`);
  }
  return { parsed, bytes: text };
}

function entry(kind, app) {
  const src = (file) => JSON.stringify(join(KIT, 'src', file));
  if (kind === 'tool') {
    return `import ${JSON.stringify(app)};
import { declaredTools } from ${src('index.js')};
if (declaredTools().length === 0) throw new Error('the app declares no tools: declare them with tool(name, { description, schema }, handler)');
export { tool } from ${src('export-tool.js')};
`;
  }
  return `import ${JSON.stringify(app)};
import { declaredRole } from ${src('role.js')};
declaredRole();
export { role } from ${src('export-role.js')};
`;
}

function leb128(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return Buffer.from(out);
}

/** A custom section (id 0) named `name` holding `data`. */
export function customSection(name, data) {
  const nameBytes = Buffer.from(name, 'utf8');
  const payload = Buffer.concat([leb128(nameBytes.length), nameBytes, Buffer.from(data)]);
  return Buffer.concat([Buffer.from([0]), leb128(payload.length), payload]);
}

export async function build(project, { module = 'app.js', output } = {}) {
  project = resolve(project);
  const { parsed, bytes } = await manifest(project);
  const app = join(project, module);
  if (!(await stat(app).catch(() => null))?.isFile()) {
    throw new BuildError(`${project}: no ${module}; the plugin's code goes there (or name its module with --module)`);
  }
  output = resolve(output ?? join(project, `${parsed.name}.wasm`));
  const tmp = await mkdtemp(join(tmpdir(), 'warden-build-'));
  try {
    const esbuild = await import('esbuild');
    const bundle = join(tmp, 'bundle.js');
    try {
      await esbuild.build({
        stdin: { contents: entry(parsed.kind, app), resolveDir: project, sourcefile: 'warden-entry.js' },
        bundle: true,
        format: 'esm',
        platform: 'neutral',
        target: 'es2022',
        mainFields: ['module', 'main'],
        external: ['warden:*', 'wasi:*'],
        // The app's `import … from 'warden-plugin'` is this kit, whichever
        // copy the project has installed: bindings and build agree.
        alias: { 'warden-plugin': join(KIT, 'src', 'index.js'), 'warden-plugin/tools': join(KIT, 'src', 'tools.js') },
        outfile: bundle,
        logLevel: 'error',
      });
    } catch {
      throw new BuildError('esbuild could not bundle the app (its errors are above)');
    }
    const { componentize } = await import('@bytecodealliance/componentize-js');
    let component;
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      ({ component } = await componentize({
        sourcePath: bundle,
        witPath: join(KIT, 'wit'),
        worldName: parsed.kind,
      }));
    } catch (e) {
      throw new BuildError(`componentize-js failed: ${e.message ?? e}`);
    } finally {
      process.chdir(cwd);
    }
    const partial = `${output}.partial`;
    await writeFile(partial, Buffer.concat([Buffer.from(component), customSection('warden:manifest', bytes)]));
    await rename(partial, output);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return output;
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command !== 'build') {
    process.stderr.write('usage: warden-plugin build [DIR] [--module app.js] [-o OUT]\n');
    return 2;
  }
  let dir = '.';
  const options = {};
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--module') options.module = rest[++i];
    else if (rest[i] === '-o' || rest[i] === '--output') options.output = rest[++i];
    else dir = rest[i];
  }
  try {
    process.stdout.write(`${await build(dir, options)}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    process.stderr.write(`error: ${e.message}\n`);
    return 1;
  }
}

// Run as a script (also through a symlink such as node_modules/.bin), not
// when imported by the kit's tests.
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
