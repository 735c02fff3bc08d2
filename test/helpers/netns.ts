/**
 * A simulated cluster: each "node" is a network namespace with its own veth into a switch namespace holding a
 * bridge, so nodes talk only over that bridge (never the machine's own network), optionally shaped with
 * `tc tbf`. Each node gets a hosts file (/etc/netns/<ns>/hosts, which `ip netns exec` bind-mounts over
 * /etc/hosts) giving the names Kubernetes DNS would give the pods. Everything is uniquely named
 * rt-<pid>-<n> and removed by `destroy()` (also registered for process exit).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root (ip netns add)";
  const probe = `rt-${process.pid}-probe`;
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "pipe" });
    execFileSync("ip", ["netns", "del", probe], { stdio: "pipe" });
  } catch (err) {
    return `cannot create a network namespace: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
  }
  try {
    execFileSync("tc", ["-V"], { stdio: "pipe" });
  } catch {
    return "tc (iproute2) is not installed";
  }
  return undefined;
}

/** One simulated machine. */
export interface SimNode {
  netns: string;
  ip: string;
  /** The node's end of its veth into the switch (inside its namespace). */
  link: string;
}

let counter = 0;

function sh(args: string[]): void {
  execFileSync(args[0], args.slice(1), { stdio: "pipe" });
}

/** N namespaces on a private bridge; see the file comment. */
export class NetnsCluster {
  readonly nodes: SimNode[] = [];
  private readonly switchNs: string;
  private readonly created: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly onExit = (): void => this.destroy();

  /**
   * @param count number of nodes
   * @param hostnames names each node is known by, per node (all nodes get every node's names)
   * @param rate optional egress cap on every veth end, e.g. "1gbit" (both directions are shaped)
   */
  constructor(count: number, hostnames: (index: number) => string[], rate?: string) {
    const id = `rt-${process.pid}-${counter++}`;
    this.switchNs = `${id}-sw`;
    process.once("exit", this.onExit);
    try {
      this.addNs(this.switchNs);
      sh(["ip", "-n", this.switchNs, "link", "add", "br0", "type", "bridge"]);
      sh(["ip", "-n", this.switchNs, "link", "set", "br0", "up"]);
      const subnet = `10.${200 + (process.pid % 50)}.${counter % 250}`;
      for (let i = 0; i < count; i++) {
        const ns = `${id}-${i}`;
        const ip = `${subnet}.${i + 1}`;
        this.addNs(ns);
        // veth names: at most 15 characters, unique per cluster (created inside the namespaces, never the host's).
        const a = `v${process.pid % 100000}${counter}n${i}`;
        const b = `v${process.pid % 100000}${counter}s${i}`;
        sh(["ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", this.switchNs]);
        sh(["ip", "-n", ns, "addr", "add", `${ip}/24`, "dev", a]);
        sh(["ip", "-n", ns, "link", "set", a, "up"]);
        sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(["ip", "-n", this.switchNs, "link", "set", b, "master", "br0"]);
        sh(["ip", "-n", this.switchNs, "link", "set", b, "up"]);
        if (rate) {
          // Shape both directions: node -> switch on the node's end, switch -> node on the switch's end.
          sh(["tc", "-n", ns, "qdisc", "add", "dev", a, "root", "tbf", "rate", rate, "burst", "1mbit", "latency", "100ms"]);
          sh(["tc", "-n", this.switchNs, "qdisc", "add", "dev", b, "root", "tbf", "rate", rate, "burst", "1mbit", "latency", "100ms"]);
        }
        this.nodes.push({ netns: ns, ip, link: a });
      }
      const hosts = ["127.0.0.1 localhost", ...this.nodes.map((n, i) => `${n.ip} ${hostnames(i).join(" ")}`)].join("\n") + "\n";
      for (const n of this.nodes) {
        fs.mkdirSync(`/etc/netns/${n.netns}`, { recursive: true });
        fs.writeFileSync(`/etc/netns/${n.netns}/hosts`, hosts);
      }
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  private addNs(name: string): void {
    sh(["ip", "netns", "add", name]);
    this.created.push(name);
  }

  /** Starts `argv` inside node `index`'s namespace (its hosts file in place of /etc/hosts). */
  spawn(index: number, argv: string[], opts: { env: NodeJS.ProcessEnv; cwd: string; log: string }): ChildProcess {
    const out = fs.openSync(opts.log, "a");
    const child = spawn("ip", ["netns", "exec", this.nodes[index].netns, ...argv], { env: opts.env, cwd: opts.cwd, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** Brings node `index`'s link to the switch down (a cable pulled / host partitioned) or back up. */
  setLink(index: number, up: boolean): void {
    const n = this.nodes[index];
    sh(["ip", "-n", n.netns, "link", "set", n.link, up ? "up" : "down"]);
  }

  /** Loads an nftables ruleset into the switch namespace (e.g. to drop a share of the bridged packets). */
  switchNftables(ruleset: string): void {
    execFileSync("ip", ["netns", "exec", this.switchNs, "nft", "-f", "-"], { input: ruleset, stdio: ["pipe", "pipe", "pipe"] });
  }

  /** Kills what is still running and removes the namespaces (their veths go with them) and hosts files. */
  destroy(): void {
    for (const c of this.children) c.kill("SIGKILL");
    this.children.clear();
    for (const ns of this.created.splice(0).reverse()) {
      try {
        execFileSync("ip", ["netns", "pids", ns], { stdio: "pipe" })
          .toString().split(/\s+/).filter(Boolean).forEach((pid) => {
            try {
              process.kill(Number(pid), "SIGKILL");
            } catch {
              // already gone
            }
          });
        execFileSync("ip", ["netns", "del", ns], { stdio: "pipe" });
      } catch {
        // best effort: keep removing the rest
      }
      fs.rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    process.off("exit", this.onExit);
  }
}
