// The package's TypeScript types compile for an app using them, and refuse
// its misuses (tests/types-check.ts, with `@ts-expect-error` on each).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('the types compile under --strict and refuse misuse', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobcast-types-'));
  try {
    // An app's tsconfig, resolving the package by its name, as from npm.
    const config = {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'es2022',
        module: 'es2022',
        moduleResolution: 'bundler',
        lib: ['es2022', 'dom'],
        skipLibCheck: false,
        paths: { '@jobcast/client': [path.join(pkg, 'index.d.ts')], '@jobcast/client/react': [path.join(pkg, 'react.d.ts')] },
      },
      files: [path.join(pkg, 'tests/types-check.ts')],
    };
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(config));
    const tsc = spawnSync(process.execPath, [path.join(pkg, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
