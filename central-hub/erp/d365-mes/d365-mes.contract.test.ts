import { runErpAdapterContract } from '../contract-suite.ts';
import { d365TestAdapter } from './d365-test-kit.ts';
import { startD365Simulator } from './d365-simulator.ts';

runErpAdapterContract({
  name: 'd365-mes (waiting for the message processor)',
  supports: ['ProductionConfirmation', 'MaterialConsumption', 'GoodsReceipt'],
  closedOrderCode: 'D365/Failed',
  async startSimulator() {
    const sim = await startD365Simulator({ processingIntervalMs: 10 });
    return {
      url: sim.url,
      stop: sim.stop,
      documentsFor: (tx) => sim.messages().filter((m) => m.Reference === tx.idempotencyKey && m.MessageState !== 'Failed' && m.MessageState !== 'Canceled').length,
      closeOrder: sim.closeOrder,
      reopenOrder: sim.reopenOrder,
      setFault: sim.setFault,
      clearFaults: sim.clearFaults,
    };
  },
  createAdapter: (url, { timeoutMs }) => d365TestAdapter(url, timeoutMs, { waitForProcessing: '3s', pollInterval: '10ms' }),
});
