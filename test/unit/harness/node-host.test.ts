/**
 * How the single-node harness reads iptables-save lines to delete rules by their text
 * (test/harness/node-host.ts). Pure: starts nothing.
 */
import { describe, expect, it } from 'vitest';
import { iptablesArgs } from '../../harness/node-host.ts';

describe('iptablesArgs', () => {
  it.each([
    ['-A INPUT -j KUBE-FIREWALL', ['-A', 'INPUT', '-j', 'KUBE-FIREWALL']],
    [
      '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      [
        '-A',
        'OUTPUT',
        '-m',
        'comment',
        '--comment',
        'kubernetes service portals',
        '-j',
        'KUBE-SERVICES',
      ],
    ],
    [
      '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
      [
        '-A',
        'KUBE-FIREWALL',
        '!',
        '-s',
        '127.0.0.0/8',
        '-d',
        '127.0.0.0/8',
        '-m',
        'comment',
        '--comment',
        'block incoming localnet connections',
        '-m',
        'conntrack',
        '!',
        '--ctstate',
        'RELATED,ESTABLISHED,DNAT',
        '-j',
        'DROP',
      ],
    ],
    [
      '-A X -m comment --comment "say \\"hi\\"" -j ACCEPT',
      ['-A', 'X', '-m', 'comment', '--comment', 'say "hi"', '-j', 'ACCEPT'],
    ],
    [
      '-A X -m comment --comment "" -j ACCEPT',
      ['-A', 'X', '-m', 'comment', '--comment', '', '-j', 'ACCEPT'],
    ],
  ])('splits %s', (line, args) => {
    expect(iptablesArgs(line)).toEqual(args);
  });
});
