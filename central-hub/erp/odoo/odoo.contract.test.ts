import { uuidv5 } from '../../../contracts/index.ts';
import { runErpAdapterContract } from '../contract-suite.ts';
import { odooTestAdapter } from './odoo-test-kit.ts';
import { startOdooSimulator } from './odoo-simulator.ts';

for (const protocol of ['json2', 'jsonrpc'] as const) {
  runErpAdapterContract({
    name: `odoo (${protocol})`,
    supports: ['ProductionConfirmation', 'MaterialConsumption', 'GoodsReceipt'],
    closedOrderCode: 'odoo/mo-done',
    async startSimulator() {
      const sim = await startOdooSimulator();
      return {
        url: sim.url,
        stop: sim.stop,
        documentsFor: (tx) => sim.applied(uuidv5(tx.idempotencyKey)),
        closeOrder: sim.closeOrder,
        reopenOrder: sim.reopenOrder,
        setFault: sim.setFault,
        clearFaults: sim.clearFaults,
      };
    },
    createAdapter: (url, { timeoutMs }) => odooTestAdapter(url, timeoutMs, { protocol }),
  });
}
