/** HOST:PORT addresses with IPv6 literals, and the world's coordinator address from flags or MASTER_ADDR. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HOST_PORT_PATTERN, joinHostPort, splitHostPort, wildcardHost } from "../shared/net/host-port";
import { resolveWorld } from "../launch/world";

test("IPv6 literals are bracketed in addresses and bare for sockets", () => {
  assert.equal(joinHostPort("fd00::1", 29400), "[fd00::1]:29400");
  assert.equal(joinHostPort("[fd00::1]", 29400), "[fd00::1]:29400");
  assert.equal(joinHostPort("host0", "29400"), "host0:29400");
  assert.deepEqual(splitHostPort("[fd00::1]:29400"), { host: "fd00::1", port: 29400 });
  assert.deepEqual(splitHostPort("10.0.0.1:5"), { host: "10.0.0.1", port: 5 });
  for (const ok of ["host0:1", "10.0.0.1:29400", "[::1]:29400", "[fd00::1:2]:8"]) assert.ok(HOST_PORT_PATTERN.test(ok), ok);
  for (const bad of ["::1:29400", "host0", "host0:", "[::1]", "a b:1", "host:123456"]) assert.ok(!HOST_PORT_PATTERN.test(bad), bad);
  assert.equal(wildcardHost(true), "::");
  assert.equal(wildcardHost(false), "0.0.0.0");
});

test("MASTER_ADDR may be a bare IPv6 address; an unbracketed one in --coordinator is refused with the form to use", () => {
  const w = resolveWorld({ nodes: 2 }, { MASTER_ADDR: "fd00::1", MASTER_PORT: "29500", NODE_RANK: "1" });
  assert.equal(w.coordinatorAddress, "[fd00::1]:29500");
  assert.equal(w.nodeRank, 1);
  assert.throws(() => resolveWorld({ nodes: 2, coordinator: "fd00::1:29400" }, {}), /'fd00::1:29400' is not HOST:PORT \(an IPv6 address in brackets: \[fd00::1\]:29400\)/);
});
