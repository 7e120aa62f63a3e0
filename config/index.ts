/** The configuration layer: schema, loading and validation of Tempest's INI configuration. */
export { assertPortsBindable, loadConfig, splitArgv, type LoadOptions } from './load.js';
export { expectation, SCHEMA, type KeySpec, type SectionName, type TempestConfig } from './schema.js';
