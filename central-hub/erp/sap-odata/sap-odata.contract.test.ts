import { parseConfig, resolveSecrets, transactionTypeOf } from '../../../contracts/index.ts';
import { runErpAdapterContract } from '../contract-suite.ts';
import { sapOdataConfigSchema } from './config.ts';
import { createSapOdataAdapter, sapExternalId, sapHeaderText } from './sap-odata-adapter.ts';
import { SAP_SIM_USER, startSapSimulator } from './sap-simulator.ts';

runErpAdapterContract({
  name: 'sap-odata',
  supports: ['ProductionConfirmation', 'MaterialConsumption', 'GoodsReceipt'],
  closedOrderCode: 'RU/494',
  async startSimulator() {
    const sim = await startSapSimulator();
    return {
      url: sim.url,
      stop: sim.stop,
      documentsFor(tx) {
        if (transactionTypeOf(tx) === 'ProductionConfirmation') {
          return sim.confirmations().filter((c) => c.ExternalSystemConfirmation === sapExternalId(tx.idempotencyKey)).length;
        }
        return sim.materialDocuments().filter((d) => d.MaterialDocumentHeaderText === sapHeaderText(tx.idempotencyKey)).length;
      },
      closeOrder: sim.closeOrder,
      reopenOrder: sim.reopenOrder,
      setFault: sim.setFault,
      clearFaults: sim.clearFaults,
    };
  },
  createAdapter(url, { timeoutMs }) {
    const config = resolveSecrets(
      parseConfig(sapOdataConfigSchema, {
        type: 'sap-odata',
        url,
        client: '100',
        auth: { type: 'basic', username: SAP_SIM_USER.username, password: '${SAP_PASSWORD}' },
        timeout: timeoutMs,
        concurrency: 8,
      }),
      { env: { SAP_PASSWORD: SAP_SIM_USER.password }, readFile: () => '' },
    );
    return createSapOdataAdapter(config);
  },
});
