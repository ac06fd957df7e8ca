/** The public API of src/core/events: event shapes, format checks, redaction, hashes, ids and signing. */
export { isStateEvent, splitStateMapKey, stateMapKey, type Event, type PDU, type StateMap } from "./event.js";
export { redactPdu } from "./redaction.js";
export {
  computeContentHash,
  computeReferenceHash,
  contentHashInput,
  contentHashMatches,
  referenceHashInput,
} from "./hashes.js";
export {
  computeEventId,
  eventIdOf,
  generateLocalEventId,
  generateRoomId,
  roomIdForCreateEvent,
} from "./ids.js";
export { eventSignatures, hashAndSignEvent, requiredSignatureServers, verifyEventSignature } from "./signing.js";
export {
  MAX_AUTH_EVENTS,
  MAX_KEY_BYTES,
  MAX_PDU_BYTES,
  MAX_PREV_EVENTS,
  parsePdu,
  type ParsePduOptions,
  type ParsePduResult,
} from "./format.js";
export { authEventTypesFor, type AuthEventsSelectionInput } from "./auth_events.js";
