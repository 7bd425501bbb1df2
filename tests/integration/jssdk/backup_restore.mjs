// matrix-js-sdk (Rust crypto, in-memory stores) against a running DevNet: cross-signing,
// secret storage and key backup on a first device; a second device restores the backup
// with the recovery key and decrypts the history. Driven by
// tests/integration/test_jssdk_e2ee.py.
//
//   node backup_restore.mjs '{"baseUrl": "...", "userId": "@a:x", "password": "..."}'
//
// Prints one JSON object on stdout (the only stdout output) and exits 0, or prints the
// failure on stderr and exits 1. The js-sdk's warnings and errors go to stderr too; its
// debug logging only with JSSDK_DEBUG=1. Every wait is on an event or a condition, and
// bounded by a deadline.

import { Console } from "node:console";
import { createRequire } from "node:module";

const debug = Boolean(process.env.JSSDK_DEBUG);
const stderr = new Console({ stdout: process.stderr, stderr: process.stderr });
const quiet = () => {};
// The js-sdk looks the console methods up on every call, so this catches all its logging.
globalThis.console = Object.assign(Object.create(stderr), {
    log: debug ? stderr.log.bind(stderr) : quiet,
    info: debug ? stderr.info.bind(stderr) : quiet,
    debug: debug ? stderr.debug.bind(stderr) : quiet,
    trace: debug ? stderr.trace.bind(stderr) : quiet,
});

const sdk = await import("matrix-js-sdk");
const { CryptoEvent, EventShieldColour, EventShieldReason, decodeRecoveryKey } =
    await import("matrix-js-sdk/lib/crypto-api/index.js");
const { ClientEvent, Direction, EventType, MatrixEventEvent, RoomEvent } = sdk;

const args = JSON.parse(process.argv[2]);
const WAIT_MS = 20_000;
const MESSAGES = ["first secret", "second secret", "third secret"];

/** Resolve once `check()` holds, re-checking whenever `emitter` emits one of `events`. */
async function waitFor(what, emitter, events, check, timeoutMs = WAIT_MS) {
    if (await check()) return;
    let onEvent;
    let timer;
    try {
        await new Promise((resolve, reject) => {
            let checking = Promise.resolve();
            onEvent = () => {
                checking = checking.then(async () => {
                    if (await check()) resolve();
                }).catch(reject);
            };
            for (const name of events) emitter.on(name, onEvent);
            timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
            onEvent(); // in case it became true between the first check and the listeners
        });
    } finally {
        clearTimeout(timer);
        for (const name of events) emitter.off(name, onEvent);
    }
}

function assert(condition, message) {
    if (!condition) throw new Error(`assertion failed: ${message}`);
}

/** Log in a new device with the password and start a syncing client with Rust crypto;
 * `beforeSync(crypto)` runs before the first sync. */
async function startDevice(name, secretStorageKeys, beforeSync = async () => {}) {
    const login = await sdk.createClient({ baseUrl: args.baseUrl }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: args.userId },
        password: args.password,
        initial_device_display_name: name,
    });
    const client = sdk.createClient({
        baseUrl: args.baseUrl,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
        cryptoCallbacks: {
            // The app's cache of secret storage keys: what bootstrapSecretStorage made, or
            // what the user typed in (the recovery key) on the second device.
            getSecretStorageKey: async ({ keys }) => {
                const id = Object.keys(keys).find((k) => secretStorageKeys.has(k));
                return id === undefined ? null : [id, secretStorageKeys.get(id)];
            },
            cacheSecretStorageKey: (keyId, _info, key) => secretStorageKeys.set(keyId, key),
        },
    });
    await client.initRustCrypto({ useIndexedDB: false });
    await beforeSync(client.getCrypto());
    const prepared = new Promise((resolve, reject) => {
        client.on(ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED") resolve();
            if (state === "ERROR") reject(data?.error ?? new Error("sync failed"));
        });
    });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: false });
    await prepared;
    return client;
}

/** Answers to the password stage of user-interactive auth, in a session the server
 * opened; records whether the server asked (true) or took the request without (false). */
const passwordAsked = [];
async function withPassword(makeRequest) {
    try {
        await makeRequest(null);
        passwordAsked.push(false);
    } catch (e) {
        const session = e?.data?.session;
        if (e?.httpStatus !== 401 || !session) throw e;
        assert(e.data.flows?.some((f) => f.stages.includes("m.login.password")),
               `a password flow is offered: ${JSON.stringify(e.data)}`);
        passwordAsked.push(true);
        await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: args.userId },
            password: args.password,
            session,
        });
    }
}

async function backupCount(client, version) {
    const info = await client.http.authedRequest("GET", `/room_keys/version/${version}`);
    return info.count;
}

/** Cross-signing keys for the first device, before it syncs. The first keys need no auth
 * (the spec's exception); replacing them needs the password. (Replacing them while
 * syncing would race with the /keys/query the first upload causes: the Rust SDK drops
 * its new private keys when an answer with the old public keys comes in after them.) */
async function bootstrapCrossSigningTwice(crypto) {
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: withPassword });
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: withPassword,
                                         setupNewCrossSigning: true });
}

async function firstDevice(secretStorageKeys) {
    const client = await startDevice("js-sdk first device", secretStorageKeys,
                                     bootstrapCrossSigningTwice);
    const crypto = client.getCrypto();
    let recoveryKey;
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => {
            const generated = await crypto.createRecoveryKeyFromPassphrase();
            recoveryKey = generated.encodedPrivateKey;
            return generated;
        },
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    assert(recoveryKey, "bootstrapSecretStorage made a recovery key");
    assert(await crypto.isCrossSigningReady(), "cross-signing is ready on the first device");
    assert(await crypto.isSecretStorageReady(), "secret storage is ready on the first device");
    // bootstrapSecretStorage starts the new backup without waiting for it: check it now.
    const check = await crypto.checkKeyBackupAndEnable();
    assert(check?.trustInfo.trusted, "the first device trusts its new backup");
    const version = await crypto.getActiveSessionBackupVersion();
    assert(version === check.backupInfo.version, "key backup is active on the first device");

    const { room_id: roomId } = await client.createRoom({
        name: "backed up",
        initial_state: [{ type: EventType.RoomEncryption, state_key: "",
                          content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitFor("the encrypted room on the first device", client, [RoomEvent.Timeline],
                  async () => client.getRoom(roomId) !== null
                      && await crypto.isEncryptionEnabledInRoom(roomId));
    const sent = [];
    for (const body of MESSAGES) {
        const { event_id: eventId } = await client.sendTextMessage(roomId, body);
        sent.push({ eventId, body });
    }
    // One megolm session. The js-sdk uploads it after a random delay of up to 10 s, then
    // reports that nothing remains to upload.
    await waitFor("the room key in the backup", client, [CryptoEvent.KeyBackupSessionsRemaining],
                  async () => await backupCount(client, version) >= 1);
    return { client, roomId, sent, version, recoveryKey };
}

/** Read the room's history through /messages and decrypt it with the keys we have now. */
async function decryptHistory(client, roomId) {
    const response = await client.createMessagesRequest(roomId, null, 50, Direction.Backward);
    const mapper = client.getEventMapper();
    const events = response.chunk.map((raw) => mapper(raw)).filter((e) => e.isEncrypted());
    const decrypted = {};
    for (const event of events) {
        await client.decryptEventIfNeeded(event);
        assert(!event.isDecryptionFailure(),
               `${event.getId()} decrypts: ${event.decryptionFailureReason}`);
        decrypted[event.getId()] = await described(client, event);
    }
    return decrypted;
}

/** What a decrypted event said, with which megolm session, and how its key is trusted. */
async function described(client, event) {
    const info = await client.getCrypto().getEncryptionInfoForEvent(event);
    return {
        body: event.getContent().body,
        sessionId: event.getWireContent().session_id,
        shield: EventShieldColour[info.shieldColour],
        shieldReason: info.shieldReason === null ? null : EventShieldReason[info.shieldReason],
    };
}

async function secondDevice(first, recoveryKey) {
    // A fresh store: it knows nothing but what the user typed in, the recovery key.
    const typedIn = new Map();
    const client = await startDevice("js-sdk second device", typedIn);
    const crypto = client.getCrypto();
    const keyId = await client.secretStorage.getDefaultKeyId();
    assert(keyId, "the default secret storage key is in account data");
    const key = decodeRecoveryKey(recoveryKey);
    assert(await client.secretStorage.checkKey(key, (await client.secretStorage.getKey(keyId))[1]),
           "the recovery key matches the secret storage key description");
    typedIn.set(keyId, key);

    // Cross-signing from secret storage: the device signs itself (keys/signatures/upload).
    assert(await crypto.userHasCrossSigningKeys(args.userId, true), "the server has our cross-signing keys");
    await crypto.bootstrapCrossSigning({});
    assert(await crypto.isCrossSigningReady(), "cross-signing is ready on the second device");
    await waitForCrossSigned(client, client.getDeviceId(), "the second device to see itself cross-signed");

    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    assert(check?.backupInfo.version === first.version, "the second device sees the same backup");
    assert(check.trustInfo.trusted && check.trustInfo.matchesDecryptionKey,
           "the backup's signatures are trusted and the key from secret storage matches it");
    // The js-sdk may already be fetching the undecryptable sessions of its timeline one by
    // one (GET /room_keys/keys/{roomId}/{sessionId}) now that it has the key: then those are
    // not counted as `imported` here again. `total` is what the whole backup held.
    const restored = await crypto.restoreKeyBackup();
    const history = await decryptHistory(client, first.roomId);
    return { client, restored, history };
}

/** Wait until `client` knows our `deviceId` as signed by our self-signing key: the
 * server announced a change of our device list in /sync and /keys/query returned the
 * device with that signature. */
async function waitForCrossSigned(client, deviceId, what) {
    const crypto = client.getCrypto();
    await waitFor(what, client, [CryptoEvent.DevicesUpdated, CryptoEvent.KeysChanged,
                                 CryptoEvent.UserTrustStatusChanged],
                  async () => (await crypto.getDeviceVerificationStatus(args.userId, deviceId))
                      ?.crossSigningVerified === true);
}

/** A new message reaches the second device live. The first device starts a new megolm
 * session for it, whose key only an Olm-encrypted to-device message (after /keys/claim)
 * can bring: the backup gets it later, and a key from there would not be authenticated. */
async function liveMessage(first, second) {
    const body = "after the restore";
    await first.client.getCrypto().forceDiscardSession(first.roomId);
    const { event_id: eventId } = await first.client.sendTextMessage(first.roomId, body);
    const room = second.client.getRoom(first.roomId);
    assert(room, "the second device has the room");
    const decrypted = () => {
        const event = room.findEventById(eventId);
        return event !== undefined && !event.isBeingDecrypted() && !event.isDecryptionFailure()
            && event.getClearContent() !== null;
    };
    await waitFor("the live message on the second device", second.client,
                  [RoomEvent.Timeline, MatrixEventEvent.Decrypted], decrypted);
    return { eventId, body, received: await described(second.client, room.findEventById(eventId)) };
}

async function main() {
    const deadline = setTimeout(() => {
        console.error("backup_restore.mjs: overall deadline passed");
        process.exit(2);
    }, 55_000);
    const first = await firstDevice(new Map());
    const second = await secondDevice(first, first.recoveryKey);
    await waitForCrossSigned(first.client, second.client.getDeviceId(),
                             "the first device to see the second one cross-signed");
    const live = await liveMessage(first, second);
    for (const client of [first.client, second.client]) client.stopClient();
    clearTimeout(deadline);
    process.stdout.write(JSON.stringify({
        sdkVersion: createRequire(import.meta.url)("matrix-js-sdk/package.json").version,
        passwordAsked,
        backupVersion: first.version,
        sent: first.sent,
        restored: second.restored,
        history: second.history,
        live,
    }) + "\n");
}

try {
    await main();
    process.exit(0);
} catch (e) {
    console.error("backup_restore.mjs failed:", e?.stack ?? e, e?.data ?? "");
    process.exit(1);
}
