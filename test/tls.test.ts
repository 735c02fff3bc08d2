/**
 * Mutual TLS (communication.tls): a job whose coordinator and ring run over TLS completes, and while it runs the
 * coordinator refuses a plaintext client and a client whose certificate another CA signed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadCoordinatorProto, TOKEN_METADATA_KEY } from "../proto/coordinator";
import { startLaunch, tempDir, tinyArgs } from "./helpers/launch";
import { makePki, opensslUnavailable } from "./helpers/pki";

function heartbeat(address: string, credentials: grpc.ChannelCredentials, token: string): Promise<grpc.ServiceError | null> {
  const { Client } = loadCoordinatorProto();
  const client = new Client(address, credentials);
  const md = new grpc.Metadata();
  md.set(TOKEN_METADATA_KEY, token);
  return new Promise((resolve) => {
    (client as unknown as { Heartbeat: (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void })
      .Heartbeat({ job_id: "tiny", rank: 0, step: 0, phase: "probe" }, md, { deadline: Date.now() + 4000 }, (err) => {
        client.close();
        resolve(err);
      });
  });
}

test("a job over mutual TLS completes; plaintext and foreign-CA clients are refused", { timeout: 180_000 }, async (t) => {
  const noOpenssl = opensslUnavailable();
  if (noOpenssl !== undefined) {
    t.skip(noOpenssl);
    return;
  }
  const dir = tempDir("tls");
  const good = makePki(dir, "job");
  const foreign = makePki(dir, "stranger");
  const token = "tls-test-token";
  const run = startLaunch(
    tinyArgs(dir + "/run", "--workers", "2", "--max-steps", "10",
      "--set", `communication.tls.ca_file=${good.ca}`, "--set", `communication.tls.cert_file=${good.cert}`, "--set", `communication.tls.key_file=${good.key}`,
    ).filter((a) => a !== "--quiet"),
    { RINGTRAIN_TOKEN: token },
  );
  let address = "";
  const end = Date.now() + 60_000;
  while (address === "") {
    const m = /coordinator listening on (127\.0\.0\.1:\d+)/.exec(run.stderrSoFar());
    if (m) address = m[1];
    else {
      assert.ok(Date.now() < end, `no coordinator address:\n${run.stderrSoFar()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const plain = await heartbeat(address, grpc.credentials.createInsecure(), token);
  assert.ok(plain !== null, "a plaintext client must be refused");
  const stranger = await heartbeat(address, grpc.credentials.createSsl(fs.readFileSync(good.ca), fs.readFileSync(foreign.key), fs.readFileSync(foreign.cert)), token);
  assert.ok(stranger !== null, "a client certificate from another CA must be refused");
  const member = await heartbeat(address, grpc.credentials.createSsl(fs.readFileSync(good.ca), fs.readFileSync(good.key), fs.readFileSync(good.cert)), token);
  assert.equal(member, null, "a client with the job's certificate is served");

  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, "run", "metrics.jsonl"), "utf8").trim().split("\n").length, 10);
  // grpc-js's IP ServerName (DEP0123) is silenced in workers; nothing else should warn in a clean TLS job
  const logs = [0, 1].map((rank) => fs.readFileSync(path.join(dir, "run", "logs", `rank-${rank}.log`), "utf8")).join("");
  assert.doesNotMatch(r.stderr + logs, /DeprecationWarning|DEP0123/);
  fs.rmSync(dir, { recursive: true, force: true });
});
