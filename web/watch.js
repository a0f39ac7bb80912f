// xg2g watch page: plays the channel's HLS playlist in the page's <video> or <audio> element
// (id "player", playlist in data-hls). Safari and iOS play HLS natively; elsewhere hls.js,
// served by xg2g from data-hlsjs, is loaded only when needed. No inline handlers (the page
// has a Content-Security-Policy). The status line (id "status") carries data-engine, data-state,
// data-time and data-frames (decoded video frames); `?report` logs them (see below).
// `?engine=native` or `?engine=hls.js` chooses the player, `?profile=h264` another profile
// than the page's.
'use strict';
(function () {
  var started = performance.now();
  var media = document.getElementById('player');
  var status = document.getElementById('status');
  var errorBox = document.getElementById('error');
  if (!media || !status || !errorBox) {
    return;
  }
  var query = new URLSearchParams(window.location.search);
  var hlsPath = media.dataset.hls;
  var profile = query.get('profile');
  if (profile && /^[a-z0-9_-]{1,32}$/.test(profile)) {
    hlsPath = hlsPath.replace(/\/auto\/index\.m3u8$/, '/' + profile + '/index.m3u8');
  }
  var src = new URL(hlsPath, document.baseURI).href;
  var isVideo = media.tagName === 'VIDEO';
  var failed = false;
  // Milliseconds from this script's start to the first decoded frame (audio: first playback),
  // and the rebuffering after it: events where playback waited 250 ms or more (a shorter
  // 'waiting' is a decoder catching its breath that nobody sees), and their total time.
  var firstFrame = -1;
  var stalls = 0;
  var stalledMs = 0;
  var waitingSince = -1;

  function firstFrameSeen() {
    if (firstFrame < 0) {
      firstFrame = Math.round(performance.now() - started);
    }
  }
  if (isVideo && media.requestVideoFrameCallback) {
    media.requestVideoFrameCallback(firstFrameSeen);
  }

  function say(text, state) {
    if (failed) {
      return;
    }
    status.textContent = text;
    status.dataset.state = state;
  }

  // For problems of this browser rather than of the stream.
  var elsewhere = ' The MPEG-TS link below plays in VLC, mpv or Kodi.';

  function fail(text) {
    say('Stopped', 'error');
    failed = true;
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function decodedFrames() {
    if (!isVideo) {
      return 0;
    }
    if (media.getVideoPlaybackQuality) {
      return media.getVideoPlaybackQuality().totalVideoFrames;
    }
    return media.webkitDecodedFrameCount || 0;
  }

  media.addEventListener('timeupdate', function () {
    status.dataset.time = media.currentTime.toFixed(1);
    status.dataset.frames = String(decodedFrames());
  });
  media.addEventListener('playing', function () {
    if (!isVideo || !media.requestVideoFrameCallback) {
      firstFrameSeen();
    }
    if (waitingSince >= 0) {
      var waited = performance.now() - waitingSince;
      waitingSince = -1;
      stalledMs += waited;
      if (waited >= 250) {
        stalls += 1;
      }
    }
    say(media.muted ? 'Playing without sound: unmute with the controls' : 'Playing', 'playing');
  });
  media.addEventListener('waiting', function () {
    if (firstFrame >= 0 && waitingSince < 0) {
      waitingSince = performance.now();
    }
    say('Buffering…', 'waiting');
  });

  // Browsers may refuse to start sound without a click: start video muted then, or wait for play.
  function start() {
    var promise = media.play();
    if (!promise) {
      return;
    }
    promise.catch(function (e) {
      if (e.name !== 'NotAllowedError') {
        return;
      }
      if (isVideo && !media.muted) {
        media.muted = true;
        start();
      } else {
        say('Press play to start', 'paused');
      }
    });
  }

  function playNative() {
    status.dataset.engine = 'native';
    media.addEventListener('error', function () {
      var e = media.error;
      fail('The stream cannot be played here' + (e && e.message ? ' (' + e.message + ').' : '.') + elsewhere);
    });
    media.src = src;
    start();
  }

  // The server's own words for a failed playlist request: {"error":{"code","message"}}.
  function serverMessage(data) {
    try {
      var body = JSON.parse(data.networkDetails.responseText);
      return body.error.message;
    } catch (e) {
      return '';
    }
  }

  function describe(data) {
    if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR) {
      var message = serverMessage(data);
      var code = data.response && data.response.code ? 'HTTP ' + data.response.code : 'no answer';
      return 'The stream could not be started (' + (message || code) + ').';
    }
    if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_TIMEOUT) {
      return 'The stream did not start in time.';
    }
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      return 'The connection to the stream was lost (' + data.details + ').';
    }
    return 'Playback failed (' + data.details + ').' + elsewhere;
  }

  function playHlsJs() {
    status.dataset.engine = 'hls.js';
    var hls = new Hls({
      // A new session may take up to its start timeout (20 s by default) for its first segment.
      manifestLoadingTimeOut: 30000,
      manifestLoadingMaxRetry: 1,
    });
    var recovered = false;
    hls.on(Hls.Events.ERROR, function (event, data) {
      if (!data.fatal) {
        return;
      }
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
        recovered = true;
        hls.recoverMediaError();
        return;
      }
      hls.destroy();
      fail(describe(data));
    });
    hls.on(Hls.Events.MANIFEST_PARSED, start);
    hls.loadSource(src);
    hls.attachMedia(media);
  }

  function loadHlsJs(then) {
    var script = document.createElement('script');
    script.src = media.dataset.hlsjs;
    script.addEventListener('load', then);
    script.addEventListener('error', function () {
      fail('The player script could not be loaded.');
    });
    document.head.appendChild(script);
  }

  // With ?report in the page's address, one console line a second says how playback goes
  // (headless browser tests read it; it costs nothing otherwise). `tag` names the player.
  if (query.has('report')) {
    var tag = (query.get('tag') || '').replace(/[^A-Za-z0-9_.-]/g, '');
    // The least media buffered ahead of playback since the first frame, sampled every 100 ms
    // while playing (ms; -1 before): how close the player came to rebuffering.
    var leastAhead = -1;
    window.setInterval(function () {
      var buffered = media.buffered;
      if (firstFrame < 0 || media.paused || buffered.length === 0) {
        return;
      }
      var ahead = Math.round((buffered.end(buffered.length - 1) - media.currentTime) * 1000);
      leastAhead = leastAhead < 0 ? Math.max(ahead, 0) : Math.min(leastAhead, Math.max(ahead, 0));
    }, 100);
    window.setInterval(function () {
      console.info('xg2g-report tag=' + (tag || '-') + ' engine=' + (status.dataset.engine || 'none') +
        ' state=' + status.dataset.state + ' time=' + media.currentTime.toFixed(1) +
        ' frames=' + decodedFrames() + ' audio=' + (media.webkitAudioDecodedByteCount || 0) +
        ' first=' + firstFrame + ' stalls=' + stalls + ' stalled=' + Math.round(stalledMs) +
        ' ahead=' + leastAhead + (failed ? ' error=' + errorBox.textContent : ''));
    }, 1000);
  }

  // Chrome also answers "maybe" for HLS but plays it less reliably than hls.js (hls.js README):
  // native playback where ManagedMediaSource marks Safari, or where there is no MSE (older iOS).
  var nativeHls = media.canPlayType('application/vnd.apple.mpegurl') !== '';
  var managed = 'ManagedMediaSource' in window;
  var mse = managed || 'MediaSource' in window;
  var engine = query.get('engine');
  say('Starting…', 'starting');
  if (engine === 'native' && nativeHls) {
    playNative();
  } else if (nativeHls && (managed || !mse) && engine !== 'hls.js') {
    playNative();
  } else if (mse) {
    loadHlsJs(function () {
      if (window.Hls && Hls.isSupported()) {
        playHlsJs();
      } else if (nativeHls) {
        playNative();
      } else {
        fail('This browser cannot play HLS.' + elsewhere);
      }
    });
  } else {
    fail('This browser cannot play HLS.' + elsewhere);
  }
})();
