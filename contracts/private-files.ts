import { dirname } from 'node:path';

/** the file functions the policy needs: the caller hands in node:fs (contracts/ does no I/O of its own) */
export interface PrivateFilesFs {
  chmodSync(path: string, mode: number): void;
  closeSync(fd: number): void;
  existsSync(path: string): boolean;
  fchmodSync(fd: number, mode: number): void;
  mkdirSync(path: string, options: { recursive: true; mode?: number }): unknown;
  openSync(path: string, flags: string, mode: number): number;
}

/**
 * Before a SQLite database is opened (the hub's hub.db, the agent's outbox.db; issue #22): on POSIX its
 * folder, when created here, is 0700 and the database file 0600, whatever the umask. SQLite creates the
 * -wal and -shm files with the main file's mode, so they are 0600 too. Folders and files that exist keep
 * their mode (an installer may have set group access on purpose). On Windows file modes mean nothing: the
 * installer's ACLs on the state folder are the answer there; only the folder is created.
 */
export function preparePrivateDatabase(path: string, fs: PrivateFilesFs): void {
  if (path === ':memory:' || path === '') return;
  const dir = dirname(path);
  const posix = process.platform !== 'win32';
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, ...(posix ? { mode: 0o700 } : {}) });
    if (posix) fs.chmodSync(dir, 0o700);
  }
  if (posix && !fs.existsSync(path)) {
    const fd = fs.openSync(path, 'a', 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
    } finally {
      fs.closeSync(fd);
    }
  }
}
