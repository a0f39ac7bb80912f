// xg2g's guide on the pages, kept current without reloading. Served from /assets/guide.js; the
// pages' Content-Security-Policy allows no inline script, so everything happens here.
//
// Channel list (GET /): each row has .epg with .now (.when, .title), a <progress> and .next;
// the server renders them as of page load (times in UTC). This script rewrites the times in local
// time, moves the progress bars every 15 s, moves on to the next programme when one ends, and
// asks api/v1/guide/now again each minute and whenever a programme it shows has ended.
//
// Watch page (GET /watch/<ref>, when the page includes this script): shows the running programme
// and next/previous channel links under the heading, and switches channels with the number keys
// (digits, then a short pause or Enter) and PageUp/PageDown.
'use strict';

(function () {
  const REFRESH_MS = 60000;
  const TICK_MS = 15000;
  const DIGIT_WAIT_MS = 1200;

  // Server time minus local time, in seconds, so a client with a wrong clock still shows the
  // right progress.
  let offset = 0;
  let guide = null;
  let fetching = false;

  const nowSeconds = () => Date.now() / 1000 + offset;

  function clock(unix) {
    const date = new Date(unix * 1000);
    const time = document.createElement('time');
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return time;
  }

  function setSpan(element, slot) {
    element.replaceChildren(clock(slot.start), '–', clock(slot.stop));
  }

  // A channel's programme at `t`: the one the server called now, else the next one once it
  // has begun (the server's answer may be a minute old).
  function current(channel, t) {
    for (const slot of [channel.now, channel.next]) {
      if (slot && slot.start <= t && t < slot.stop) return slot;
    }
    return null;
  }

  function upcoming(channel, t) {
    for (const slot of [channel.now, channel.next]) {
      if (slot && slot.start > t) return slot;
    }
    return null;
  }

  async function load(url) {
    if (fetching) return false;
    fetching = true;
    try {
      const response = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
      if (!response.ok) return false;
      guide = await response.json();
      offset = guide.time - Date.now() / 1000;
      return true;
    } catch (error) {
      return false;
    } finally {
      fetching = false;
    }
  }

  // ---- The channel list ----------------------------------------------------------------------

  function renderRow(row, channel, t) {
    const epg = row.querySelector('.epg');
    if (!epg) return false;
    const now = current(channel, t);
    const next = upcoming(channel, t);
    const nowWhen = epg.querySelector('.now .when');
    const nowTitle = epg.querySelector('.now .title');
    const bar = epg.querySelector('progress');
    const nextLine = epg.querySelector('.next');
    if (now) {
      setSpan(nowWhen, now);
      nowTitle.textContent = now.title;
      nowTitle.classList.remove('none');
      bar.max = now.stop - now.start;
      bar.value = Math.min(Math.max(t - now.start, 0), now.stop - now.start);
      bar.hidden = false;
      bar.setAttribute('aria-label', `${now.title}: ${Math.round((100 * bar.value) / bar.max)} %`);
    } else {
      nowWhen.replaceChildren();
      nowTitle.textContent = next ? 'Nothing announced' : 'No guide';
      nowTitle.classList.add('none');
      bar.hidden = true;
    }
    if (next) {
      nextLine.querySelector('.when').replaceChildren(clock(next.start));
      nextLine.querySelector('.title').textContent = next.title;
      nextLine.hidden = false;
    } else {
      nextLine.hidden = true;
    }
    // Stale: what the server called "now" has ended, so ask again.
    return Boolean(channel.now && channel.now.stop <= t);
  }

  function renderList(container) {
    if (!guide) return false;
    const t = nowSeconds();
    const rows = new Map();
    for (const row of container.querySelectorAll('li[data-ref]')) rows.set(row.dataset.ref, row);
    let stale = false;
    for (const channel of guide.channels) {
      const row = rows.get(channel.ref);
      if (row && renderRow(row, channel, t)) stale = true;
    }
    return stale;
  }

  function startList(container) {
    const url = container.dataset.guide;
    const refresh = async () => {
      if (await load(url)) renderList(container);
    };
    refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(() => {
      if (renderList(container)) refresh();
    }, TICK_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refresh();
    });
  }

  // ---- The watch page ------------------------------------------------------------------------

  function watchLink(channel) {
    const link = document.createElement('a');
    // Relative to /watch/<this ref>; './' so the reference's colons never read as a scheme.
    link.href = `./${encodeURIComponent(channel.ref).replace(/%3A/gi, ':')}`;
    link.textContent = `${channel.number} ${channel.name}`;
    return link;
  }

  function go(channel) {
    if (channel) window.location.assign(watchLink(channel).href);
  }

  function startWatch(heading, reference) {
    const info = document.createElement('p');
    info.id = 'programme';
    info.setAttribute('aria-live', 'polite');
    const nav = document.createElement('nav');
    nav.className = 'zap';
    nav.setAttribute('aria-label', 'Channels');
    heading.after(info, nav);

    let index = -1;
    const render = () => {
      if (!guide) return;
      index = guide.channels.findIndex((c) => c.ref === reference);
      const channel = guide.channels[index];
      if (!channel) return;
      const t = nowSeconds();
      const now = current(channel, t);
      const next = upcoming(channel, t);
      info.replaceChildren();
      if (now) {
        const when = document.createElement('span');
        when.className = 'when';
        setSpan(when, now);
        const bar = document.createElement('progress');
        bar.max = now.stop - now.start;
        bar.value = Math.min(Math.max(t - now.start, 0), bar.max);
        info.append(when, now.title, bar);
      } else {
        info.append(next ? 'Nothing announced now' : 'No guide for this channel');
      }
      if (next) {
        const line = document.createElement('span');
        line.className = 'next';
        line.append('Next ', clock(next.start), ' ', next.title);
        info.append(line);
      }
      const count = guide.channels.length;
      const previous = guide.channels[(index - 1 + count) % count];
      const following = guide.channels[(index + 1) % count];
      const back = watchLink(previous);
      back.rel = 'prev';
      back.prepend('◀ ');
      const forward = watchLink(following);
      forward.rel = 'next';
      forward.append(' ▶');
      nav.replaceChildren(back, ' ', forward);
    };
    const refresh = async () => {
      if (await load('../api/v1/guide/now')) render();
    };
    refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(render, TICK_MS);

    let digits = '';
    let timer = null;
    const jump = () => {
      const number = Number(digits);
      digits = '';
      if (guide) go(guide.channels.find((c) => c.number === number));
    };
    document.addEventListener('keydown', (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.target instanceof HTMLInputElement) return;
      if (/^[0-9]$/.test(event.key)) {
        digits += event.key;
        clearTimeout(timer);
        timer = setTimeout(jump, DIGIT_WAIT_MS);
      } else if (event.key === 'Enter' && digits) {
        clearTimeout(timer);
        jump();
      } else if (guide && index >= 0 && (event.key === 'PageUp' || event.key === 'PageDown')) {
        const count = guide.channels.length;
        go(guide.channels[(index + (event.key === 'PageDown' ? 1 : -1) + count) % count]);
        event.preventDefault();
      }
    });
  }

  // A thumbnail that has to be made is charged to the rate limits like a stream start, so a
  // long channel list may be refused some for a moment (429): each is asked for again, a few
  // times, further apart each time.
  const THUMB_RETRIES = 3;
  const THUMB_RETRY_MS = 2000;

  function retryThumbnails(list) {
    for (const img of list.querySelectorAll('img.thumb')) {
      let tries = 0;
      const retry = () => {
        if (tries >= THUMB_RETRIES) return;
        tries += 1;
        setTimeout(() => {
          const src = img.src;
          img.src = src;
        }, THUMB_RETRY_MS * tries);
      };
      img.addEventListener('error', retry);
      // It may have failed before this script ran.
      if (img.complete && img.naturalWidth === 0) retry();
    }
  }

  function start() {
    const list = document.querySelector('[data-guide]');
    if (list) {
      retryThumbnails(list);
      startList(list);
      return;
    }
    const heading = document.querySelector('h1');
    const match = window.location.pathname.match(/\/watch\/([^/]+)$/);
    if (heading && match) startWatch(heading, decodeURIComponent(match[1]));
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
