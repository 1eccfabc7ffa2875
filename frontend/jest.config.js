// Jest runs the *.test.ts(x) files beside the code in jsdom. SWC strips types (tsc checks them in
// `npm run typecheck`). Some of @grafana/ui's dependencies ship only ES modules (.mjs, or .js
// with `export`), so those are transformed too instead of being ignored like the rest of
// node_modules.
const ESM_ONLY_DEPENDENCIES = [
  '@wojtekmaj/date-utils',
  'd3-color',
  'd3-interpolate',
  'd3-scale-chromatic',
  'get-user-locale',
  'marked',
  'memoize',
  'mimic-function',
  'ol',
  'react-calendar',
];

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/src'],
  setupFiles: ['<rootDir>/jest.polyfills.js'],
  setupFilesAfterEnv: ['<rootDir>/jest.setup.ts'],
  transform: {
    '^.+\\.(t|j)sx?$|^.+\\.mjs$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', tsx: true },
          transform: { react: { runtime: 'classic' } },
        },
      },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY_DEPENDENCIES.join('|')})/)`],
  moduleFileExtensions: ['ts', 'tsx', 'js', 'mjs', 'cjs', 'json'],
  moduleNameMapper: {
    // Style sheets and images imported by @grafana/ui mean nothing to jsdom.
    '\\.(css|scss|svg|png)$': '<rootDir>/jest.assetStub.js',
    '^react-inlinesvg$': '<rootDir>/jest.inlineSvgStub.js',
  },
};
