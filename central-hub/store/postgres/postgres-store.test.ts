import { hubStoreContract } from '../contract-suite.ts';
import { pgSchemaForTest } from './pg-test-kit.ts';

const pgt = await pgSchemaForTest();

hubStoreContract('postgres', {
  skip: async () => ('skip' in pgt ? pgt.skip : undefined),
  open: async () => ('skip' in pgt ? Promise.reject(new Error(pgt.skip)) : pgt.open()),
  second: async () => ('skip' in pgt ? Promise.reject(new Error(pgt.skip)) : pgt.open()),
  cleanup: async () => {
    if (!('skip' in pgt)) await pgt.drop();
  },
});
