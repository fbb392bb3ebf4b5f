// The phone app's in-app QR scanner (issue 13, item 5): the rear camera in a <video>,
// frames decoded by the browser's BarcodeDetector where it reads QR codes, otherwise by the
// vendored ZXing build (idp/static/vendor/README.md). Everything runs under the IdP's CSP
// (script-src 'self'): no inline code, no eval, no workers, no WebAssembly.

// About 7 decodes a second: a QR held in view is read well within a second, and a phone's
// main thread stays free (ZXing takes some 10-40 ms on a 640x480 frame).
const FRAME_INTERVAL_MS = 150;
// Larger camera frames are scaled down to this longest side before ZXing reads them: a QR
// worth scanning fills much of the frame, and the work grows with the pixel count.
const MAX_SIDE = 960;
const ZXING_URL = new URL("../vendor/zxing-library.min.js", import.meta.url).href;

let zxing = null; // the promise of the ZXing namespace, once asked for

/** The vendored ZXing build (its global `ZXing`), imported on first use only: the file is
 * a UMD script that, run as a module, sets `globalThis.ZXing`. A failed load is forgotten,
 * so that the next call tries again. */
export function loadZXing() {
  zxing ??= import(ZXING_URL).then(
    () => {
      if (!globalThis.ZXing?.QRCodeReader) throw new Error("ZXing did not load");
      return globalThis.ZXing;
    },
    (error) => {
      zxing = null;
      throw error;
    },
  );
  return zxing;
}

/** The text of the QR code in `imageData` (a canvas's pixels) read by ZXing, or null when
 * there is none (or none readable) in the picture. */
export async function decodeWithZXing(imageData) {
  const ZXing = await loadZXing();
  const { data, width, height } = imageData;
  const luminances = new Uint8ClampedArray(width * height);
  for (let i = 0, p = 0; i < luminances.length; i += 1, p += 4) {
    luminances[i] = (data[p] + 2 * data[p + 1] + data[p + 2]) >> 2; // green-favouring grey
  }
  const source = new ZXing.RGBLuminanceSource(luminances, width, height);
  const bitmap = new ZXing.BinaryBitmap(new ZXing.HybridBinarizer(source));
  const hints = new Map([[ZXing.DecodeHintType.TRY_HARDER, true]]);
  try {
    return new ZXing.QRCodeReader().decode(bitmap, hints).getText();
  } catch (error) {
    // No code in view, or one not (yet) readable: the next frame may do better.
    const misses = [ZXing.NotFoundException, ZXing.ChecksumException, ZXing.FormatException];
    if (misses.some((type) => error instanceof type)) return null;
    throw error;
  }
}

/** A function from the <video> to the text of a QR code in its current frame (or null). */
async function makeDecoder() {
  if ("BarcodeDetector" in window) {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    if (formats.includes("qr_code")) {
      const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      return async (video) => (await detector.detect(video))[0]?.rawValue ?? null;
    }
  }
  await loadZXing();
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  let frames = 0;
  return (video) => {
    // ZXing misses some clear codes outright (zxing-js/library#653), and misses them again
    // in every like frame (a phone held still, a fake camera): every other frame is read
    // at half size, which reads most of them. Measured on still 640x480 frames of 500
    // login codes as the IdP draws them: 14 missed at full size, 6 at both sizes.
    const halve = frames % 2 === 1;
    frames += 1;
    const fit = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const scale = halve ? fit / 2 : fit;
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    return decodeWithZXing(context.getImageData(0, 0, canvas.width, canvas.height));
  };
}

/** What a refused getUserMedia means to the person holding the phone. */
function cameraErrorKind(error) {
  switch (error?.name) {
    case "NotAllowedError": // the person (or the browser's settings) said no
    case "SecurityError": // a permissions policy forbids the camera here
      return "denied";
    case "NotFoundError": // no camera at all
    case "OverconstrainedError":
      return "no_camera";
    default: // NotReadableError (the camera is busy elsewhere), AbortError, ...
      return "failed";
  }
}

/**
 * Open the rear camera in `video` and read QR codes from it until one is read: then stop
 * the camera and call `onText(text)`, once. On failure call `onError(kind)`, once, with
 * kind "insecure" (no navigator.mediaDevices: not a secure context), "denied",
 * "no_camera" or "failed". Resolves to a function that stops the camera and the loop.
 */
export async function startScanner(video, onText, onError) {
  if (!navigator.mediaDevices?.getUserMedia) {
    onError("insecure");
    return () => {};
  }
  let decode;
  try {
    decode = await makeDecoder();
  } catch {
    onError("failed");
    return () => {};
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment" },
      audio: false,
    });
  } catch (error) {
    onError(cameraErrorKind(error));
    return () => {};
  }

  let stopped = false;
  let timer = null;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    for (const track of stream.getTracks()) track.stop();
    if (video.srcObject === stream) { // not a newer scan's camera, started meanwhile
      video.pause();
      video.srcObject = null;
    }
  };
  const fail = () => {
    if (stopped) return;
    stop();
    onError("failed");
  };

  // A camera that goes away (unplugged, taken by the system) ends its track: say so.
  for (const track of stream.getVideoTracks()) track.addEventListener("ended", fail);
  video.muted = true;
  video.playsInline = true;
  video.setAttribute("playsinline", ""); // older iOS Safari reads only the attribute
  video.srcObject = stream;
  try {
    await video.play();
  } catch {
    fail();
    return stop;
  }

  const tick = async () => {
    if (stopped) return;
    let text = null;
    // HAVE_CURRENT_DATA: a frame to read; before it, the video is 0x0.
    if (video.readyState >= video.HAVE_CURRENT_DATA && video.videoWidth > 0) {
      try {
        text = await decode(video);
      } catch {
        fail();
        return;
      }
    }
    if (stopped) return;
    if (text) {
      stop();
      onText(text);
      return;
    }
    timer = setTimeout(tick, FRAME_INTERVAL_MS);
  };
  timer = setTimeout(tick, 0);
  return stop;
}
