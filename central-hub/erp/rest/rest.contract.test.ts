import { runErpAdapterContract } from '../contract-suite.ts';
import { restTestAdapter } from './rest-test-kit.ts';
import { startRestSimulator } from './rest-simulator.ts';

runErpAdapterContract({
  name: 'rest',
  supports: ['ProductionConfirmation', 'MaterialConsumption', 'GoodsReceipt'],
  closedOrderCode: 'ORDER_CLOSED',
  async startSimulator() {
    const sim = await startRestSimulator();
    return {
      url: sim.url,
      stop: sim.stop,
      documentsFor: (tx) => sim.postings().filter((p) => p.key === tx.idempotencyKey).length,
      closeOrder: sim.closeOrder,
      reopenOrder: sim.reopenOrder,
      setFault: sim.setFault,
      clearFaults: sim.clearFaults,
    };
  },
  createAdapter: (url, { timeoutMs }) => restTestAdapter(url, timeoutMs),
});
