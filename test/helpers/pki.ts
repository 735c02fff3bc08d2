/** Test certificates made with the openssl CLI: a CA and a node certificate for 127.0.0.1/localhost it signed. */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** PEM file paths of one test PKI. */
export interface TestPki {
  ca: string;
  cert: string;
  key: string;
}

/** Why certificates cannot be made here (no openssl), or undefined when they can. */
export function opensslUnavailable(): string | undefined {
  try {
    execFileSync("openssl", ["version"], { stdio: "pipe" });
    return undefined;
  } catch {
    return "openssl is not installed: cannot make test certificates";
  }
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: "pipe" });
}

/**
 * A CA and a node certificate signed by it, in `dir` with the given prefix; the certificate's subjectAltName is
 * `san` (openssl syntax), by default 127.0.0.1 and localhost.
 */
export function makePki(dir: string, prefix: string, san = "IP:127.0.0.1,DNS:localhost"): TestPki {
  const f = (n: string): string => path.join(dir, `${prefix}-${n}`);
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", `/CN=${prefix} test CA`], dir);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("node.key"), "-out", f("node.csr"), "-subj", "/CN=localhost"], dir);
  fs.writeFileSync(f("ext.cnf"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(["x509", "-req", "-in", f("node.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("node.pem"), "-days", "2", "-extfile", f("ext.cnf")], dir);
  return { ca: f("ca.pem"), cert: f("node.pem"), key: f("node.key") };
}
