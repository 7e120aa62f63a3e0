export { mountTempest, type MountHandle, type MountOptions } from './mount.js';
export { TempestFs, validSnapshotName } from './tempest-fs.js';
