// `npm pack` / `npm publish` of the root package: the published package.json must build
// nothing at install time and must point npm at the per-platform binaries.
//   node .ci/pack-manifest.mjs publish   (prepack)  writes the published form, keeping the
//                                                    checkout's form in package.json.checkout
//   node .ci/pack-manifest.mjs restore   (postpack) puts the checkout's form back
// The published form has no scripts (no `prepare` build), no devDependencies, and one
// optionalDependency per package under npm/, at this version.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const manifest = path.join(root, 'package.json');
const saved = path.join(root, 'package.json.checkout');

if (process.argv[2] === 'publish') {
  if (fs.existsSync(saved)) throw new Error('package.json.checkout exists: a previous pack did not finish; restore first');
  const text = fs.readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  fs.writeFileSync(saved, text);
  delete pkg.scripts;
  delete pkg.devDependencies;
  pkg.optionalDependencies = Object.fromEntries(
    fs.readdirSync(path.join(root, 'npm')).sort().map((dir) => {
      const platform = JSON.parse(fs.readFileSync(path.join(root, 'npm', dir, 'package.json'), 'utf8'));
      if (platform.version !== pkg.version) throw new Error(`npm/${dir} is ${platform.version}, raftline is ${pkg.version}`);
      return [platform.name, pkg.version];
    }),
  );
  fs.writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
} else if (process.argv[2] === 'restore') {
  if (fs.existsSync(saved)) fs.renameSync(saved, manifest);
} else {
  throw new Error('usage: node .ci/pack-manifest.mjs publish|restore');
}
