// The JS side's linter: ESLint's recommended rules over the package (js/), its tests, the
// examples and the benches. `npm run lint` runs it.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['target/', 'node_modules/', 'npm/', 'tests/', 'js/*.d.ts'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { ecmaVersion: 2024, sourceType: 'commonjs', globals: globals.node },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { ecmaVersion: 2024, sourceType: 'module', globals: globals.node },
  },
  {
    rules: {
      // `_`-prefixed arguments and caught errors are unused on purpose.
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
];
