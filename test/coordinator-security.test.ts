/**
 * The coordinator's port during a real run: wrong token, wrong job id, forged reports for unknown ranks,
 * oversized messages and raw garbage are each refused with a clear error, and the run still completes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import * as fs from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { loadCoordinatorProto, TOKEN_METADATA_KEY } from "../proto/coordinator";
import { startLaunch, tempDir, tinyArgs } from "./helpers/launch";

type Callback = (err: grpc.ServiceError | null, value?: unknown) => void;

function call(address: string, method: string, request: object, token: string | undefined): Promise<grpc.ServiceError | null> {
  const { Client } = loadCoordinatorProto();
  const client = new Client(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token !== undefined) md.set(TOKEN_METADATA_KEY, token);
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: Callback) => void>)[method];
    fn.call(client, request, md, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err);
    });
  });
}

test("the coordinator refuses strangers and malformed calls while the run goes on", async () => {
  const dir = tempDir("sec");
  const token = "s3cret-token-for-this-test";
  const run = startLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "12").filter((a) => a !== "--quiet"), { RINGTRAIN_TOKEN: token });
  let address = "";
  const deadline = Date.now() + 60_000;
  while (address === "") {
    const m = /coordinator listening on (127\.0\.0\.1:\d+)/.exec(await new Promise<string>((r) => setTimeout(() => r(run.stderrSoFar()), 100)));
    if (m) address = m[1];
    assert.ok(Date.now() < deadline, "coordinator address not printed");
  }

  const noToken = await call(address, "Heartbeat", { job_id: "tiny", rank: 0, step: 0, phase: "x" }, undefined);
  assert.equal(noToken?.code, grpc.status.PERMISSION_DENIED);
  assert.match(noToken!.details, /missing job token/);
  const badToken = await call(address, "ReportFailure", { job_id: "tiny", rank: 0, step: 1, phase: "x", message: "forged" }, "wrong");
  assert.equal(badToken?.code, grpc.status.PERMISSION_DENIED);
  assert.match(badToken!.details, /wrong job token/);
  const badJob = await call(address, "ReportFailure", { job_id: "other-job", rank: 0, step: 1, phase: "x", message: "forged" }, token);
  assert.equal(badJob?.code, grpc.status.FAILED_PRECONDITION);
  assert.match(badJob!.details, /job id 'other-job' does not match/);
  const unknownRank = await call(address, "NextStep", { job_id: "tiny", rank: 77, completed_step: 3 }, token);
  assert.equal(unknownRank?.code, grpc.status.FAILED_PRECONDITION);
  assert.match(unknownRank!.details, /rank 77 has not joined/);
  const huge = await call(address, "Heartbeat", { job_id: "tiny", rank: 0, step: 0, phase: "x".repeat(2 * 1024 * 1024) }, token);
  assert.equal(huge?.code, grpc.status.RESOURCE_EXHAUSTED);
  // Raw bytes on the port: the connection is dropped, nothing else happens.
  await new Promise<void>((resolve) => {
    const [host, port] = address.split(":");
    const s = net.connect(Number(port), host, () => s.end(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + "\u0000\u00ff".repeat(5000))));
    s.on("close", () => resolve());
    s.on("error", () => resolve());
    s.resume();
  });

  const r = await run.done;
  assert.equal(r.code, 0, `the run must be unaffected:\n${r.stderr}`);
  assert.equal(r.stderr.includes(token), false, "the token is never printed");
  for (const f of fs.readdirSync(`${dir}/logs`)) assert.equal(fs.readFileSync(`${dir}/logs/${f}`, "utf8").includes(token), false);
  const steps = fs.readFileSync(`${dir}/metrics.jsonl`, "utf8").trim().split("\n").length;
  assert.equal(steps, 12);
  fs.rmSync(dir, { recursive: true, force: true });
});
