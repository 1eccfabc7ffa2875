import { agentAddressError, agentListErrors, parseAgentAddress } from './agentAddress';

describe('parseAgentAddress', () => {
  it.each([
    ['127.0.0.1:50051', '127.0.0.1', 50051],
    ['  10.0.0.7:1  ', '10.0.0.7', 1],
    ['kindling-agent.monitoring.svc.cluster.local:50051', 'kindling-agent.monitoring.svc.cluster.local', 50051],
    ['localhost:65535', 'localhost', 65535],
    ['[::1]:50051', '::1', 50051],
    ['[fe80::1%eth0]:9000', 'fe80::1%eth0', 9000],
  ])('accepts %j', (input, host, port) => {
    expect(parseAgentAddress(input)).toEqual({ ok: true, address: { host, port } });
  });

  it.each([
    ['', 'Enter an agent address as HOST:PORT'],
    ['   ', 'Enter an agent address as HOST:PORT'],
    ['http://127.0.0.1:50051', 'Leave out the scheme: write HOST:PORT, e.g. 127.0.0.1:50051'],
    ['127.0.0.1', 'Add the port: HOST:PORT, e.g. 127.0.0.1:50051'],
    [':50051', 'Add the host: HOST:PORT, e.g. 127.0.0.1:50051'],
    ['127.0.0.1:', 'Port must be a number from 1 to 65535, got ""'],
    ['127.0.0.1:0', 'Port must be a number from 1 to 65535, got "0"'],
    ['127.0.0.1:65536', 'Port must be a number from 1 to 65535, got "65536"'],
    ['127.0.0.1:50o51', 'Port must be a number from 1 to 65535, got "50o51"'],
    ['256.0.0.1:50051', '"256.0.0.1" is not a host name or IPv4 address'],
    ['10.0.0:50051', '"10.0.0" is not a host name or IPv4 address'],
    ['-agent:50051', '"-agent" is not a host name or IPv4 address'],
    ['agent_1:50051', '"agent_1" is not a host name or IPv4 address'],
    ['::1:50051', 'Put an IPv6 address in brackets: [ADDRESS]:PORT'],
    ['[::1]50051', 'Write an IPv6 agent as [ADDRESS]:PORT, e.g. [::1]:50051'],
    ['[zz::1]:50051', '"zz::1" is not an IPv6 address'],
  ])('rejects %j', (input, error) => {
    expect(parseAgentAddress(input)).toEqual({ ok: false, error });
  });
});

describe('agentAddressError', () => {
  it('is undefined for a valid address and the message otherwise', () => {
    expect(agentAddressError('127.0.0.1:50051')).toBeUndefined();
    expect(agentAddressError('127.0.0.1')).toBe('Add the port: HOST:PORT, e.g. 127.0.0.1:50051');
  });
});

describe('agentListErrors', () => {
  it('flags each invalid row and each repeat of an earlier agent', () => {
    expect(agentListErrors(['10.0.0.1:50051', 'bad', 'AGENT:7', '10.0.0.1:50051', 'agent:7', 'agent:8'])).toEqual([
      undefined,
      'Add the port: HOST:PORT, e.g. 127.0.0.1:50051',
      undefined,
      'Same agent as row 1',
      'Same agent as row 3',
      undefined,
    ]);
  });

  it('is empty for no agents', () => {
    expect(agentListErrors([])).toEqual([]);
  });
});
