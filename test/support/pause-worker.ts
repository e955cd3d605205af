import { Session } from 'node:inspector/promises';
import type { Worker } from 'node:worker_threads';

interface Reply {
  result?: { result?: { value?: unknown } };
  error?: { message: string };
}

/**
 * Stops a worker thread from running any JavaScript until resume() is called, through the inspector, so
 * that the code under test needs no hook for it. A test can then order work across threads without racing
 * them on a loaded machine: what the paused worker was asked is certainly not done yet. The pause holds
 * from the worker's next JavaScript on (an idle worker stops as it takes its next message).
 */
export async function pauseWorker(worker: Worker): Promise<{ resume: () => Promise<void> }> {
  const session = new Session();
  session.connect();
  const sessions: string[] = [];
  session.on('NodeWorker.attachedToWorker', ({ params }) => sessions.push(params.sessionId));
  const answers = new Map<number, (reply: Reply) => void>();
  session.on('NodeWorker.receivedMessageFromWorker', ({ params }) => {
    const reply = JSON.parse(params.message) as Reply & { id?: number };
    if (reply.id !== undefined) answers.get(reply.id)?.(reply);
  });
  let lastId = 0;
  const send = async (sessionId: string, method: string, params: object = {}): Promise<Reply> => {
    const id = ++lastId;
    const reply = new Promise<Reply>((resolve) => answers.set(id, resolve));
    await session.post('NodeWorker.sendMessageToWorker', { sessionId, message: JSON.stringify({ id, method, params }) });
    const answer = await reply;
    if (answer.error) throw new Error(`${method} in worker ${worker.threadId}: ${answer.error.message}`);
    return answer;
  };
  // Existing workers are announced before enable answers. The inspector numbers them its own way: ask each its threadId.
  await session.post('NodeWorker.enable', { waitForDebuggerOnStart: false });
  let sessionId: string | undefined;
  for (const s of sessions) {
    const { result } = await send(s, 'Runtime.evaluate', { expression: "process.getBuiltinModule('node:worker_threads').threadId", returnByValue: true });
    if (result?.result?.value === worker.threadId) sessionId = s;
  }
  if (sessionId === undefined) throw new Error(`worker ${worker.threadId} is not among the ${sessions.length} the inspector sees`);
  await send(sessionId, 'Debugger.enable');
  await send(sessionId, 'Debugger.pause');
  let resumed = false;
  return {
    // Once only, whoever asks first (the test, or its clean-up after a failure).
    resume: async () => {
      if (resumed) return;
      resumed = true;
      await send(sessionId, 'Debugger.resume');
      await send(sessionId, 'Debugger.disable');
      session.disconnect();
    },
  };
}
