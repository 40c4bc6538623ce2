// The gateways of a pair (config `peers`, `virtualAddress`): a chip per gateway in the header —
// ready or not, which one holds the shared address, when a silent one last answered.
import { $, attr, el, fmt, set } from './dom.js';
import type { GatewayView } from './types.js';

const chips = new Map<string, HTMLElement>();

/** Nothing is shown for a gateway alone without a virtual address: there is no pair to show. */
export function renderGateways(list: readonly GatewayView[]): void {
  const box = $('gateways');
  const shown = list.length > 1 || list.some((g) => g.holdsAddress !== null) ? list : [];
  const seen = new Set<string>();
  for (const g of shown) {
    seen.add(g.address);
    let chip = chips.get(g.address);
    if (!chip) {
      chip = el('span', 'gw');
      chip.append(el('span', 'gw-name'), el('span', 'gw-state'));
      chips.set(g.address, chip);
      box.append(chip);
    }
    const state = g.error !== undefined ? 'silent' : g.ready === null ? 'unknown' : g.ready ? 'ready' : 'not-ready';
    attr(chip, 'data-state', state);
    attr(chip, 'data-holds', String(g.holdsAddress === true));
    set(chip.children[0]!, `${g.address}${g.self ? ' (this)' : ''}`);
    set(chip.children[1]!, chipText(g, state));
  }
  for (const [address, chip] of chips) {
    if (!seen.has(address)) {
      chip.remove();
      chips.delete(address);
    }
  }
}

function chipText(g: GatewayView, state: string): string {
  const words = state === 'silent' ? `not answering · last seen ${g.lastSeen === null ? 'never' : fmt.time(g.lastSeen)}` : state === 'unknown' ? 'asking…' : state === 'ready' ? 'ready' : 'not ready';
  return g.holdsAddress === true ? `${words} · holds the address` : words;
}
