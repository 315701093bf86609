import { AttributeIds, BrowseDirection, NodeClass, resolveNodeId, type ClientSession, type ReferenceDescription } from 'node-opcua';
import { pino, type Logger } from 'pino';
import { connectClient, type SecurityModeName, type SecurityPolicyName } from './client.ts';
import { builtInTypes } from './config.ts';

/**
 * `plantbridge-agent opcua browse <endpoint> [--node <id>] [--depth N] [--json] [--emit-config]`: the
 * address space as a tree with data types and access levels, and a driver config fragment for the
 * variables found.
 */

export interface BrowseNode {
  nodeId: string;
  browseName: string;
  displayName: string;
  nodeClass: string;
  /** from the Objects folder: /Objects/1:Line1/1:GoodCount (usable as `browsePath` in the config) */
  browsePath?: string;
  /** variables: built-in type name, or the data type's node id */
  dataType?: string;
  /** variables: CurrentRead, CurrentWrite, HistoryRead, ... */
  access?: string[];
  children?: BrowseNode[];
}

export interface BrowseOptions {
  node?: string;
  depth?: number;
  securityMode?: SecurityModeName;
  securityPolicy?: SecurityPolicyName;
  stateDir: string;
  log?: Logger;
  /** at most this many nodes in all (default 5000) */
  maxNodes?: number;
}

const OBJECTS = 'ns=0;i=85';
const ROOT = 'ns=0;i=84';

export async function browse(endpoint: string, opts: BrowseOptions): Promise<BrowseNode[]> {
  const log = opts.log ?? pino({ level: 'silent' });
  const open = await connectClient({
    endpoint,
    securityMode: opts.securityMode ?? 'None',
    securityPolicy: opts.securityPolicy ?? 'None',
    stateDir: opts.stateDir,
    log,
  });
  let session: ClientSession | undefined;
  try {
    session = await open.client.createSession();
    const start = resolveNodeId(opts.node ?? OBJECTS).toString();
    const startPath = start === OBJECTS ? '/Objects' : start === ROOT ? '' : undefined;
    const budget = { left: opts.maxNodes ?? 5000 };
    return await browseLevel(session, [{ nodeId: start, path: startPath }], opts.depth ?? 3, budget).then((m) => m.get(start) ?? []);
  } finally {
    if (session) await session.close().catch(() => {});
    await open.dispose();
  }
}

async function browseAll(session: ClientSession, nodeIds: string[]): Promise<ReferenceDescription[][]> {
  const results = await session.browse(
    nodeIds.map((nodeId) => ({
      nodeId,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: 'HierarchicalReferences',
      includeSubtypes: true,
      nodeClassMask: NodeClass.Object | NodeClass.Variable,
      resultMask: 0x3f,
    })),
  );
  const out: ReferenceDescription[][] = [];
  for (const r of results) {
    const refs = [...(r.references ?? [])];
    let cp = r.continuationPoint;
    while (cp && cp.length > 0) {
      const next = await session.browseNext(cp, false);
      refs.push(...(next.references ?? []));
      cp = next.continuationPoint;
    }
    out.push(refs);
  }
  return out;
}

/** Browses one level for many parents at once, then recurses: a few round trips per level, not per node. */
async function browseLevel(
  session: ClientSession,
  parents: Array<{ nodeId: string; path: string | undefined }>,
  depth: number,
  budget: { left: number },
): Promise<Map<string, BrowseNode[]>> {
  const byParent = new Map<string, BrowseNode[]>();
  if (depth <= 0 || parents.length === 0) return byParent;
  const refs = await browseAll(
    session,
    parents.map((p) => p.nodeId),
  );
  const level: Array<{ node: BrowseNode; parentPath: string | undefined }> = [];
  parents.forEach((p, i) => {
    const kids: BrowseNode[] = [];
    for (const r of refs[i]) {
      if (budget.left <= 0) break;
      budget.left--;
      const bn = r.browseName;
      const seg = bn.namespaceIndex === 0 ? bn.name ?? '' : `${bn.namespaceIndex}:${bn.name}`;
      const node: BrowseNode = {
        nodeId: r.nodeId.toString(),
        browseName: bn.toString(),
        displayName: r.displayName?.text ?? bn.name ?? '',
        nodeClass: NodeClass[r.nodeClass] ?? String(r.nodeClass),
        ...(p.path !== undefined ? { browsePath: `${p.path}/${seg}` } : {}),
      };
      kids.push(node);
      level.push({ node, parentPath: p.path });
    }
    byParent.set(p.nodeId, kids);
  });
  const variables = level.filter((l) => l.node.nodeClass === 'Variable').map((l) => l.node);
  if (variables.length > 0) {
    const reads = await session.read(
      variables.flatMap((v) => [
        { nodeId: v.nodeId, attributeId: AttributeIds.DataType },
        { nodeId: v.nodeId, attributeId: AttributeIds.AccessLevel },
      ]),
    );
    variables.forEach((v, i) => {
      const dt = reads[2 * i].value?.value;
      if (dt) v.dataType = dataTypeName(dt.toString());
      const al = Number(reads[2 * i + 1].value?.value ?? 0);
      v.access = accessNames(al);
    });
  }
  const next = level.filter((l) => l.node.nodeClass === 'Object' || l.node.nodeClass === 'Variable');
  const below = await browseLevel(
    session,
    next.map((l) => ({ nodeId: l.node.nodeId, path: l.node.browsePath })),
    depth - 1,
    budget,
  );
  for (const l of next) {
    const kids = below.get(l.node.nodeId);
    if (kids && kids.length > 0) l.node.children = kids;
  }
  return byParent;
}

function dataTypeName(nodeId: string): string {
  const m = /^ns=0;i=(\d+)$/.exec(nodeId) ?? /^i=(\d+)$/.exec(nodeId);
  if (m) {
    const i = Number(m[1]);
    if (i >= 1 && i <= builtInTypes.length) return builtInTypes[i - 1];
    const known: Record<number, string> = { 26: 'Number', 27: 'Integer', 28: 'UInteger', 29: 'Enumeration', 290: 'Duration', 294: 'UtcTime', 295: 'LocaleId' };
    if (known[i]) return known[i];
  }
  return nodeId;
}

function accessNames(level: number): string[] {
  const names: Array<[number, string]> = [
    [1, 'CurrentRead'],
    [2, 'CurrentWrite'],
    [4, 'HistoryRead'],
    [8, 'HistoryWrite'],
  ];
  return names.filter(([bit]) => (level & bit) !== 0).map(([, n]) => n);
}

function flatten(nodes: BrowseNode[]): BrowseNode[] {
  return nodes.flatMap((n) => [n, ...flatten(n.children ?? [])]);
}

/** The tree for people (indented, one node a line), or JSON for scripts. */
export function formatBrowse(nodes: BrowseNode[], json: boolean): string {
  if (json) return `${JSON.stringify(nodes, null, 2)}\n`;
  const lines: string[] = [];
  const walk = (list: BrowseNode[], indent: string) => {
    for (const n of list) {
      const extra = n.nodeClass === 'Variable' ? `  ${n.dataType ?? '?'}  ${(n.access ?? []).map((a) => a.replace('Current', '').toLowerCase()).join(',') || '-'}` : '';
      lines.push(`${indent}${n.displayName}  ${n.nodeId}  ${n.nodeClass}${extra}`);
      if (n.children) walk(n.children, `${indent}  `);
    }
  };
  walk(nodes, '');
  return `${lines.join('\n')}\n`;
}

/**
 * A driver config fragment (YAML) for the variables among `nodes` (pass only the chosen ones). Refs are
 * made from the browse names, unique; node ids are quoted; each line says the data type.
 */
export function emitConfig(nodes: BrowseNode[], opts: { endpoint?: string; name?: string } = {}): string {
  const vars = flatten(nodes).filter((n) => n.nodeClass === 'Variable');
  const used = new Set<string>();
  const refFor = (n: BrowseNode) => {
    const base = (n.displayName || n.browseName.replace(/^\d+:/, '')).replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 60) || 'node';
    let ref = base;
    for (let i = 2; used.has(ref); i++) ref = `${base}-${i}`;
    used.add(ref);
    return ref;
  };
  const out = [
    '# generated by plantbridge-agent opcua browse --emit-config: review the refs, keep the nodes you need',
    '- type: opcua',
    `  name: ${opts.name ?? 'plc'}`,
    `  endpoint: ${JSON.stringify(opts.endpoint ?? 'opc.tcp://host:4840')}`,
    '  securityMode: SignAndEncrypt',
    '  securityPolicy: Basic256Sha256',
    '  nodes:',
  ];
  for (const n of vars) {
    out.push(`    - ref: ${JSON.stringify(refFor(n))}`);
    out.push(`      nodeId: ${JSON.stringify(n.nodeId)}`);
    if (n.dataType && (builtInTypes as readonly string[]).includes(n.dataType)) out.push(`      dataType: ${n.dataType}`);
    if (!(n.access ?? []).includes('CurrentRead')) out.push('      # not readable by this user: check the server permissions');
  }
  if (vars.length === 0) out.push('    [] # no variables in the browsed nodes');
  return `${out.join('\n')}\n`;
}
