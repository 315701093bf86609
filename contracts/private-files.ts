import { chmodSync, closeSync, existsSync, fchmodSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Before a SQLite database is opened (the hub's hub.db, the agent's outbox.db; issue #22): on POSIX its
 * folder, when created here, is 0700 and the database file 0600, whatever the umask. SQLite creates the
 * -wal and -shm files with the main file's mode, so they are 0600 too. Folders and files that exist keep
 * their mode (an installer may have set group access on purpose). On Windows file modes mean nothing: the
 * installer's ACLs on the state folder are the answer there; only the folder is created.
 */
export function preparePrivateDatabase(path: string): void {
  if (path === ':memory:' || path === '') return;
  const dir = dirname(path);
  const posix = process.platform !== 'win32';
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, ...(posix ? { mode: 0o700 } : {}) });
    if (posix) chmodSync(dir, 0o700);
  }
  if (posix && !existsSync(path)) {
    const fd = openSync(path, 'a', 0o600);
    try {
      fchmodSync(fd, 0o600);
    } finally {
      closeSync(fd);
    }
  }
}
