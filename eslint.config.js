// @ts-check
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const ioModules = ['net', 'tls', 'dgram', 'http', 'https', 'fs', 'fs/promises', 'timers', 'timers/promises', 'child_process']
  .flatMap((m) => [m, `node:${m}`])

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'benchmarks/results/**', 'coverage/**', '.petrel-tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', URL: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', performance: 'readonly' } },
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-empty': ['error', { allowEmptyCatch: true }]
    }
  },
  {
    // Sans-I/O layers: the codec and the session state machines touch no socket, file or timer.
    files: ['packages/wire/src/**/*.ts', 'packages/session/src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ioModules.map((name) => ({ name, message: 'The sans-I/O layers must not do I/O or own timers.' })) }],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval']
    }
  },
  {
    files: ['**/test/**/*.ts', 'benchmarks/**/*.{ts,js,mjs}', 'scripts/**/*.mjs'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' }
  }
)
