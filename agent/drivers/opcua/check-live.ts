import { AttributeIds, makeBrowsePath, resolveNodeId, type ClientSession } from 'node-opcua';
import { pino, type Logger } from 'pino';
import { connectClient, userIdentity } from './client.ts';
import { builtInTypes, type OpcuaConfig } from './config.ts';
import { statusName, variantToValue } from './values.ts';

/**
 * `check-config --live` for an OPC UA driver: connects as the driver would (security, user, PKI),
 * resolves browse paths, and verifies each configured node exists, is readable, and has the declared
 * data type. Contract testing before a rollout: nothing is subscribed, nothing is written.
 */
export async function checkLive(config: OpcuaConfig, stateDir: string, log: Logger = pino({ level: 'silent' })): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let open;
  try {
    open = await connectClient({
      endpoint: config.endpoint,
      securityMode: config.securityMode,
      securityPolicy: config.securityPolicy,
      stateDir,
      trustOnFirstUse: config.trustOnFirstUse,
      log,
    });
  } catch (err) {
    return { ok: false, lines: [`✗ ${config.name}: ${(err as Error).message}`] };
  }
  let session: ClientSession | undefined;
  let ok = true;
  try {
    session = await open.client.createSession(userIdentity(config.user));
    lines.push(`✓ ${config.name}: connected to ${config.endpoint} (${config.securityMode}/${config.securityPolicy}, user ${config.user.type})`);
    const nodeIds: Array<string | undefined> = config.nodes.map((n) => n.nodeId);
    const withPath = config.nodes.map((n, i) => ({ n, i })).filter(({ n }) => n.browsePath);
    if (withPath.length > 0) {
      const res = await session.translateBrowsePath(withPath.map(({ n }) => makeBrowsePath('RootFolder', n.browsePath!)));
      withPath.forEach(({ i }, j) => {
        const r = res[j];
        nodeIds[i] = r.statusCode.isGood() && r.targets?.length ? r.targets[0].targetId.toString() : undefined;
      });
    }
    const present = config.nodes.map((n, i) => ({ n, id: nodeIds[i] })).filter((x) => x.id);
    const reads = present.length
      ? await session.read(
          present.flatMap(({ id }) => [
            { nodeId: resolveNodeId(id!), attributeId: AttributeIds.Value },
            { nodeId: resolveNodeId(id!), attributeId: AttributeIds.DataType },
            { nodeId: resolveNodeId(id!), attributeId: AttributeIds.UserAccessLevel },
          ]),
        )
      : [];
    const byRef = new Map(present.map((p, k) => [p.n.ref, k]));
    for (const [i, n] of config.nodes.entries()) {
      const where = n.nodeId ?? n.browsePath!;
      const k = byRef.get(n.ref);
      if (k === undefined) {
        ok = false;
        lines.push(`✗ ${config.name}/${n.ref}: browse path ${n.browsePath} not found`);
        continue;
      }
      const value = reads[3 * k];
      const dtId = reads[3 * k + 1].value?.value?.toString() as string | undefined;
      const access = Number(reads[3 * k + 2].value?.value ?? 0);
      const dt = dtId ? typeName(dtId) : undefined;
      const problems: string[] = [];
      if (!reads[3 * k + 1].statusCode.isGood()) problems.push(`${statusName(reads[3 * k + 1].statusCode)}`);
      else {
        if (!value.statusCode.isGood()) problems.push(`value ${statusName(value.statusCode)}`);
        if ((access & 1) === 0) problems.push('not readable by this user');
        if (n.dataType && dt !== n.dataType) problems.push(`data type is ${dt ?? dtId}, config says ${n.dataType}`);
      }
      if (problems.length > 0) {
        ok = false;
        lines.push(`✗ ${config.name}/${n.ref} (${where}${nodeIds[i] !== where ? ` -> ${nodeIds[i]}` : ''}): ${problems.join('; ')}`);
      } else {
        const v = variantToValue(value.value);
        lines.push(`✓ ${config.name}/${n.ref} (${nodeIds[i]}): ${dt ?? '?'} = ${JSON.stringify(v)?.slice(0, 60)}`);
      }
    }
  } catch (err) {
    ok = false;
    lines.push(`✗ ${config.name}: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    if (session) await session.close().catch(() => {});
    await open.dispose();
  }
  return { ok, lines };
}

function typeName(nodeId: string): string {
  const m = /^(?:ns=0;)?i=(\d+)$/.exec(nodeId);
  if (m && Number(m[1]) >= 1 && Number(m[1]) <= builtInTypes.length) return builtInTypes[Number(m[1]) - 1];
  return nodeId;
}
