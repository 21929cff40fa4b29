// How long the pharmacist waits for the next fill after pressing A: User Timing marks and measures
// that bench/console_flow.py reads with performance.getEntriesByName. The console only calls these
// at named points; nothing here changes what the pharmacist sees.
//
//   tp:approve-to-shown    the key press to the next fill's photos in the page
//   tp:approve-to-painted  the same, once the browser has painted that frame
//   tp:approve-to-claimed  the key press to the next fill's claim confirmed (it can be decided)

const KEY = "tp:approve-key";
let awaitingShown = false;
let awaitingClaim = false;

/** A was pressed at keyTime (the key event's timeStamp) and the approval is on its way. */
export function approveKeyPressed(keyTime) {
  performance.mark(KEY, { startTime: keyTime });
  awaitingShown = true;
  awaitingClaim = true;
}

/** A fill's photos are decoded and in the page. */
export function fillShown(fillId) {
  performance.mark("tp:fill-shown", { detail: { fill: fillId } });
  if (!awaitingShown) return;
  awaitingShown = false;
  performance.measure("tp:approve-to-shown", KEY, "tp:fill-shown");
  requestAnimationFrame(() => setTimeout(() => {
    performance.mark("tp:fill-painted");
    performance.measure("tp:approve-to-painted", KEY, "tp:fill-painted");
  }, 0));
}

/** The claim on the fill now open was confirmed. */
export function fillClaimed() {
  if (!awaitingClaim) return;
  awaitingClaim = false;
  performance.mark("tp:fill-claimed");
  performance.measure("tp:approve-to-claimed", KEY, "tp:fill-claimed");
}

/** The claim was refused: the next fill that opens is measured for being shown, not for its claim. */
export function claimRefused() {
  awaitingClaim = false;
}

/** The approval leads to no next fill (refused, none waiting, or the pharmacist left): measure nothing. */
export function approvalEnded() {
  awaitingShown = false;
  awaitingClaim = false;
}
