// OLChat for Telegram: what the tab's and the connectors page's scripts share.
'use strict';

window.olc = Object.freeze({
  // 1536 → "1.5 KB": the size a person reads, in binary units as file managers show them.
  formatSize(bytes) {
    const units = ['B', 'KB', 'MB', 'GB'];
    let n = bytes;
    let u = 0;
    while (n >= 1024 && u < units.length - 1) { n /= 1024; u += 1; }
    return `${n.toFixed(u ? 1 : 0)} ${units[u]}`;
  },
});
