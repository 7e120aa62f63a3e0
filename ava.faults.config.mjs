// `npm run test:faults`: the end-to-end fault suite (test/faults/), apart from `npm test` because
// it takes minutes and the whole machine. Same worker settings as package.json's "ava" block.
export default {
  files: ['dist/test/faults/**/*.faults.js'],
  timeout: '5m',
  workerThreads: false,
  concurrency: 1,
  environmentVariables: { TEMPEST_LOG_LEVEL: 'warn' },
  require: ['./dist/test/helpers/exit-when-done.js'],
};
