export { mountTempest, type MountHandle, type MountOptions } from './mount.js';
export { TempestFs, validSnapshotName } from './tempest-fs.js';
export { connectRemoteStore, type Contact } from './remote-store.js';
export { mountInThread } from './mount-thread.js';
