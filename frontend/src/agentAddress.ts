/**
 * Agent addresses as the backend dials them: `HOST:PORT`, where HOST is a DNS name, an IPv4
 * address or a bracketed IPv6 address (`[::1]:50051`), and PORT is 1-65535. No scheme: the
 * backend picks it.
 */

export interface AgentAddress {
  /** Host without brackets (`::1`, not `[::1]`). */
  host: string;
  port: number;
}

export type AgentAddressResult = { ok: true; address: AgentAddress } | { ok: false; error: string };

const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
// Loose on purpose: the backend's resolver is the authority on IPv6 forms; this only keeps
// obvious typos out of the settings.
const IPV6 = /^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/;

function isHostname(host: string): boolean {
  return host.length <= 253 && host.split('.').every((label) => DNS_LABEL.test(label));
}

function isIpv4(host: string): boolean {
  const m = IPV4.exec(host);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

function isIpv6(host: string): boolean {
  return host.includes(':') && IPV6.test(host);
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) {
    return undefined;
  }
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Parses `HOST:PORT`, or says in words a person can act on why it is not one. */
export function parseAgentAddress(input: string): AgentAddressResult {
  const text = input.trim();
  if (text === '') {
    return { ok: false, error: 'Enter an agent address as HOST:PORT' };
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) {
    return { ok: false, error: 'Leave out the scheme: write HOST:PORT, e.g. 127.0.0.1:50051' };
  }

  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') {
      return { ok: false, error: 'Write an IPv6 agent as [ADDRESS]:PORT, e.g. [::1]:50051' };
    }
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIpv6(host)) {
      return { ok: false, error: `"${host}" is not an IPv6 address` };
    }
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) {
      return { ok: false, error: 'Add the port: HOST:PORT, e.g. 127.0.0.1:50051' };
    }
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) {
      return { ok: false, error: 'Put an IPv6 address in brackets: [ADDRESS]:PORT' };
    }
    if (host === '') {
      return { ok: false, error: 'Add the host: HOST:PORT, e.g. 127.0.0.1:50051' };
    }
    const looksNumeric = /^[\d.]+$/.test(host);
    if (looksNumeric ? !isIpv4(host) : !isHostname(host)) {
      return { ok: false, error: `"${host}" is not a host name or IPv4 address` };
    }
  }

  const port = parsePort(portText);
  if (port === undefined) {
    return { ok: false, error: `Port must be a number from 1 to 65535, got "${portText}"` };
  }
  return { ok: true, address: { host, port } };
}

/** The error to show next to an agent row, or undefined when the address is valid. */
export function agentAddressError(input: string): string | undefined {
  const result = parseAgentAddress(input);
  return result.ok ? undefined : result.error;
}

/**
 * One error (or undefined) per row of the agent list: each address must parse, and an agent
 * listed twice would be queried twice, doubling every count.
 */
export function agentListErrors(agents: readonly string[]): Array<string | undefined> {
  const firstRow = new Map<string, number>();
  return agents.map((agent, row) => {
    const result = parseAgentAddress(agent);
    if (!result.ok) {
      return result.error;
    }
    const key = `${result.address.host.toLowerCase()}:${result.address.port}`;
    const first = firstRow.get(key);
    if (first !== undefined) {
      return `Same agent as row ${first + 1}`;
    }
    firstRow.set(key, row);
    return undefined;
  });
}
