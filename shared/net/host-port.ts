/**
 * HOST:PORT addresses, IPv6 included: an IPv6 literal is written in brackets ("[fd00::1]:29400", as URLs and
 * grpc targets write it), while sockets take the bare host ("fd00::1").
 */

/** A host name, an IPv4 address or a bracketed IPv6 address, then ":" and a port of up to five digits. */
export const HOST_PORT_PATTERN = /^(?:[^\s:[\]]+|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;

/** Whether `host` (bare or bracketed) is an IPv6 literal. */
export function isIpv6Literal(host: string): boolean {
  return host.includes(":");
}

/** The bare host and the port of "host:port" or "[v6]:port" (the port NaN when absent). */
export function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port: Number(address.slice(colon + 1)) };
}

/** "host:port", with an IPv6 host in brackets. */
export function joinHostPort(host: string, port: number | string): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return isIpv6Literal(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/** The wildcard address to listen on for peers on other machines: IPv6's (dual-stack on Linux) when `ipv6`. */
export function wildcardHost(ipv6: boolean): string {
  return ipv6 ? "::" : "0.0.0.0";
}
