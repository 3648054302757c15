// examples/kubernetes as raftline needs it (the schemas themselves are checked with
// kubernetes-validate, see README): pods start in parallel, the peers' DNS names resolve
// before the pods are ready, a disruption keeps a quorum, the probes hit raftRouter's routes,
// and the env the StatefulSet sets is what examples/express-service.mjs reads.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import yaml from 'js-yaml';

const dir = new URL('../examples/kubernetes/', import.meta.url);
const docs = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) => yaml.loadAll(fs.readFileSync(new URL(f, dir), 'utf8')));
const find = (kind, name) => docs.find((d) => d.kind === kind && d.metadata.name === name);

describe('examples/kubernetes', () => {
  const set = find('StatefulSet', 'api');
  const headless = find('Service', set.spec.serviceName);
  const container = set.spec.template.spec.containers[0];
  const env = Object.fromEntries(container.env.map((e) => [e.name, e]));

  it('lists every manifest in its kustomization', () => {
    const kustomization = yaml.load(fs.readFileSync(new URL('kustomization.yaml', dir), 'utf8'));
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    expect([...kustomization.resources].sort()).toEqual(files);
  });

  it('starts the members together and names them through a headless Service that publishes unready pods', () => {
    expect(set.spec.podManagementPolicy).toBe('Parallel');
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(headless.spec.selector).toEqual(set.spec.selector.matchLabels);
    expect(env.SERVICE.value).toBe(headless.metadata.name);
    expect(Number(env.REPLICAS.value)).toBe(set.spec.replicas);
    expect(env.POD_NAME.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    expect(env.HTTP_URL.value).toBe(`http://$(POD_NAME).${headless.metadata.name}.$(NAMESPACE).svc.cluster.local:8080`);
  });

  it('keeps data on a claim, a quorum through disruptions, and probes raftRouter', () => {
    const mount = container.volumeMounts.find((m) => m.mountPath === env.DATA_DIR.value);
    expect(set.spec.volumeClaimTemplates.map((c) => c.metadata.name)).toContain(mount.name);
    const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(Math.floor((set.spec.replicas - 1) / 2));
    expect(pdb.spec.selector).toEqual(set.spec.selector);
    expect(container.readinessProbe.httpGet.path).toBe('/ready');
    expect(container.livenessProbe.httpGet.path).toBe('/health');
    expect(env.RAFT_SECRET.valueFrom.secretKeyRef.name).toBe(find('Secret', 'api-raft').metadata.name);
  });

  it('sets only env that the example service reads', () => {
    const service = fs.readFileSync(new URL('../examples/express-service.mjs', import.meta.url), 'utf8');
    for (const name of Object.keys(env)) expect(service).toContain(`env.${name}`);
  });
});
