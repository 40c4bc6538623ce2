import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly',
        performance: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // The dashboard runs in the browser (dashboard/tsconfig.json).
    files: ['dashboard/**/*.ts'],
    languageOptions: {
      globals: { window: 'readonly', document: 'readonly', EventSource: 'readonly', requestAnimationFrame: 'readonly', HTMLElement: 'readonly', MessageEvent: 'readonly' },
    },
  },
);
