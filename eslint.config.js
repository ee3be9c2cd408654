// Lint rules: ESLint's and typescript-eslint's recommended sets with type information, and the
// layers of src/ (docs/architecture.md) as import restrictions.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * What each folder of src/ may import from the others. Data flows receiver -> sinks -> spool ->
 * outputs; control flows operator (or standalone) -> runtime -> sinks; audit/ and policy/ are pure.
 * A folder imports only folders listed before it, so the folders cannot form a cycle;
 * test/unit/layers.test.ts checks that no file imports itself back at run time.
 */
/** @type {Readonly<Record<string, readonly string[]>>} */
const LAYERS = {
  audit: [],
  config: [],
  policy: ['audit'],
  resource: ['audit'],
  spool: ['audit'],
  outputs: ['audit', 'config', 'resource'],
  sinks: ['audit', 'outputs', 'policy', 'resource', 'spool'],
  receiver: ['audit', 'config', 'sinks'],
  telemetry: ['config', 'outputs', 'sinks', 'spool'],
  runtime: ['config', 'outputs', 'receiver', 'sinks', 'spool', 'telemetry'],
  operator: ['audit', 'config', 'outputs', 'policy', 'receiver', 'runtime', 'sinks', 'telemetry'],
  standalone: ['audit', 'config', 'runtime', 'sinks', 'telemetry'],
  cli: ['audit', 'config', 'operator', 'policy', 'receiver', 'sinks', 'standalone', 'telemetry'],
};

/** Each third-party client has one owner (the folder that may import it). */
const CLIENT_OWNERS = {
  '@kubernetes/client-node': 'operator',
  '@influxdata/influxdb-client': 'outputs/influxdb',
  fastify: 'receiver',
};

/**
 * The import restrictions of the files under `src/<dir>/`, which belongs to layer `folder`.
 *
 * @param {string} dir
 * @param {keyof typeof LAYERS} folder
 */
function layerRule(dir, folder) {
  /** @type {readonly string[]} */
  const allowed = LAYERS[folder];
  const forbidden = Object.keys(LAYERS).filter((f) => f !== folder && !allowed.includes(f));
  const others = Object.entries(CLIENT_OWNERS).filter(([, owner]) => owner !== dir);
  return {
    files: [`src/${dir}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: others.map(([name, owner]) => ({
            name,
            message: `only src/${owner}/ imports ${name}`,
          })),
          patterns: [
            {
              // main.ts is the composition root: nothing imports it.
              group: [...forbidden.map((f) => `**/${f}/**`), '**/main.ts'],
              message: `src/${folder}/ imports ${allowed.length === 0 ? 'none' : `only ${allowed.join(', ')}`} of the other folders (LAYERS in eslint.config.js)`,
            },
          ],
        },
      ],
    },
  };
}

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'bench/results/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] } },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      eqeqeq: 'error',
    },
  },
  ...Object.keys(LAYERS).map((folder) => layerRule(folder, folder)),
  layerRule('outputs/influxdb', 'outputs'),
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Tests read fixtures of known shape.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);
