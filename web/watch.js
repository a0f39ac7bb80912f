// xg2g watch page: plays the channel's HLS playlist in the page's <video> or <audio> element
// (id "player", playlist in data-hls). Safari and iOS play HLS natively; elsewhere hls.js,
// served by xg2g from data-hlsjs, is loaded only when needed. No inline handlers (the page
// has a Content-Security-Policy). The status line (id "status") carries data-engine, data-state,
// data-time and data-frames (decoded video frames); `?report` logs them (see below).
'use strict';
(function () {
  var media = document.getElementById('player');
  var status = document.getElementById('status');
  var errorBox = document.getElementById('error');
  if (!media || !status || !errorBox) {
    return;
  }
  var src = new URL(media.dataset.hls, document.baseURI).href;
  var isVideo = media.tagName === 'VIDEO';
  var failed = false;

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
    say(media.muted ? 'Playing without sound: unmute with the controls' : 'Playing', 'playing');
  });
  media.addEventListener('waiting', function () {
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
  // (headless browser tests read it; it costs nothing otherwise).
  if (new URLSearchParams(window.location.search).has('report')) {
    window.setInterval(function () {
      console.info('xg2g-report engine=' + (status.dataset.engine || 'none') + ' state=' + status.dataset.state +
        ' time=' + media.currentTime.toFixed(1) + ' frames=' + decodedFrames() +
        (failed ? ' error=' + errorBox.textContent : ''));
    }, 1000);
  }

  // Chrome also answers "maybe" for HLS but plays it less reliably than hls.js (hls.js README):
  // native playback where ManagedMediaSource marks Safari, or where there is no MSE (older iOS).
  var nativeHls = media.canPlayType('application/vnd.apple.mpegurl') !== '';
  var managed = 'ManagedMediaSource' in window;
  var mse = managed || 'MediaSource' in window;
  say('Starting…', 'starting');
  if (nativeHls && (managed || !mse)) {
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
