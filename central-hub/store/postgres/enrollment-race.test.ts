import assert from 'node:assert/strict';
import { it } from 'node:test';
import { tokenHash } from '../../api/auth.ts';
import { issueEnrollmentToken } from '../../enrollment/enrollment.ts';
import { pgSchemaForTest } from './pg-test-kit.ts';

/**
 * PostgreSQL only (SQLite runs them one after the other): an enrollment and a revocation of the same
 * agent at the same moment. Both must finish (no deadlock aborting either), and a revocation that
 * reports success leaves no working credential behind.
 */
const pgt = await pgSchemaForTest();

void it('a redeem and a revoke of one agent at once: neither fails, and the revocation holds', { skip: 'skip' in pgt ? pgt.skip : false }, async () => {
  if ('skip' in pgt) return;
  const s = pgt.open();
  try {
    await s.migrate();
    for (let round = 0; round < 30; round++) {
      const id = `race-${round}`;
      const first = await issueEnrollmentToken(s, { agentId: id, plants: ['P1'], actor: 'test' });
      assert.equal((await s.redeemEnrollment(tokenHash(first.token), tokenHash(`cred-1-${round}`))).ok, true);
      const rotated = await issueEnrollmentToken(s, { agentId: id, plants: ['P1'], actor: 'test' });
      const [redeem, revoke] = await Promise.allSettled([s.redeemEnrollment(tokenHash(rotated.token), tokenHash(`cred-2-${round}`)), s.revokeAgent(id, 'test')]);
      assert.equal(redeem.status, 'fulfilled', `round ${round}: redeem ${redeem.status === 'rejected' ? String(redeem.reason) : ''}`);
      assert.equal(revoke.status, 'fulfilled', `round ${round}: revoke ${revoke.status === 'rejected' ? String(revoke.reason) : ''}`);
      if (revoke.status === 'fulfilled' && revoke.value) {
        for (const cred of [`cred-1-${round}`, `cred-2-${round}`]) {
          const a = await s.findAgentByTokenHash(tokenHash(cred));
          assert.ok(!a || a.revokedAt, `round ${round}: ${cred} still works after the revocation`);
        }
      }
    }
  } finally {
    await s.close();
    await pgt.drop();
  }
});
