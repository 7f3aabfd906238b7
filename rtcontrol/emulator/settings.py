"""Every platform behaviour the spec does not settle, as one named setting each.

The CALLR research note (``callr-realtime-spec.md``) tags claims FACT, INFERENCE or
UNKNOWN. The emulator never guesses silently: each INFERENCE/UNKNOWN it depends on is a
field below whose default is the note's suggestion, so a test can flip it and check that
an app survives the other reading. Field docs cite the spec section.

Error strings marked *invented* appear in no CALLR source; they exist so that apps can
tell failures apart while the real tokens stay unknown.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BROADCAST_STATUS",
    "DEFAULT_API_KEY",
    "DEFAULT_LOGIN",
    "DEFAULT_PASSWORD",
    "DIALOUT_STATUS",
    "RPC_ERROR_CODES",
    "UNANSWERED_STATUS",
    "EmulatorSettings",
    "FailureMode",
]

#: What to do when the app's webhook fails (§5.4, UNKNOWN). ``hangup``: end the call with
#: the final HANGUP POST; ``retry``: POST the same request again, up to ``max_retries``.
FailureMode = Literal["hangup", "retry"]

#: Credentials the JSON-RPC server accepts out of the box (local use only).
DEFAULT_LOGIN = "emulator"
DEFAULT_PASSWORD = "emulator"
DEFAULT_API_KEY = "emulator-api-key"

#: Callee behaviour -> ``call_status`` of the single POST of an unanswered ``calls.realtime``
#: call (§6.1, §6.3: the four failure statuses of the real-time vocabulary).
UNANSWERED_STATUS: dict[str, str] = {
    "noanswer": "NOANSWER",
    "busy": "BUSY",
    "congestion": "CONGESTION",
    "rejected": "REJECTED",
}

#: Callee behaviour -> ``command_result`` of a ``dialout`` that bridged no one (§5.5
#: INFERENCE: the CDR dial-status vocabulary, which has CHANUNAVAIL but no REJECTED).
DIALOUT_STATUS: dict[str, str] = {
    "noanswer": "NOANSWER",
    "busy": "BUSY",
    "congestion": "CONGESTION",
    "rejected": "CHANUNAVAIL",
}

#: The ``calls.get_status_1`` vocabulary (§3.5, UNKNOWN), keyed by broadcast phase:
#: pending/dialing before the answer, then a dial status. ``playing`` and ``ended`` replace
#: ``up`` and ``done`` when ``broadcast_status_answered`` is ``"call_status"``.
BROADCAST_STATUS: dict[str, str] = {
    "pending": "PENDING",
    "ringing": "DIALING",
    "up": "ANSWER",
    "done": "ANSWER",
    "playing": "UP",
    "ended": "HANGUP",
    "noanswer": "NOANSWER",
    "busy": "BUSY",
    "congestion": "CONGESTION",
    "rejected": "CHANUNAVAIL",
    "cancel": "CANCEL",
}

#: JSON-RPC error codes by message token (§2.3: numeric codes UNKNOWN; 150/151 come from a
#: third-party wrapper, the negative ones from the JSON-RPC 2.0 standard).
RPC_ERROR_CODES: dict[str, int] = {
    "PARSE_ERROR": -32700,
    "INVALID_REQUEST": -32600,
    "METHOD_NOT_FOUND": -32601,
    "INTERNAL_ERROR": -32603,
    "INVALID_PARAM_FORMAT": 150,
    "PROPERTY_VALUE_ERROR": 151,
    "BAD_APP_TYPE": 151,
}


def _doc(text: str) -> str:
    return " ".join(text.split())


class EmulatorSettings(BaseModel):
    """Platform behaviours; the defaults are the research note's suggestions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- webhook exchange (§5.4) -------------------------------------------------------
    reply_timeout: float = Field(
        5.0,
        gt=0,
        description=_doc("""FACT: reply within 5 s. Real seconds (HTTP latency is not
        simulated), from POST sent to full response received."""),
    )
    on_late_reply: FailureMode = Field("hangup", description="UNKNOWN: no reply in time.")
    on_http_error: FailureMode = Field(
        "hangup", description="UNKNOWN: non-200 status or connection failure."
    )
    on_invalid_json: FailureMode = Field(
        "hangup",
        description=_doc("""UNKNOWN: body not JSON, or not an RT.Response object
        (missing/mistyped command, command_id, params or variables)."""),
    )
    max_retries: int = Field(1, ge=0, description="POSTs repeated when a mode is 'retry'.")
    error_timeout: str = Field("TIMEOUT", description="command_error of that HANGUP (invented).")
    error_http: str = Field("HTTP_ERROR", description="command_error of that HANGUP (invented).")
    error_invalid_response: str = Field(
        "INVALID_RESPONSE", description="command_error of that HANGUP (invented)."
    )
    on_invalid_command: Literal["command_error", "hangup"] = Field(
        "command_error",
        description=_doc("""INFERENCE (§5.3): a well-formed reply naming an unknown command or
        bad params is refused; the next POST carries command_error, result '' and the call
        stays up. 'hangup' ends the call instead."""),
    )
    error_unknown_command: str = Field("UNKNOWN_COMMAND", description="Invented token.")
    error_invalid_params: str = Field(
        "INVALID_PARAMS",
        description=_doc("""Invented token: bad params, and also audio that is not WAV and a
        play_record file this platform never recorded."""),
    )
    missing_params: Literal["invalid_response", "empty"] = Field(
        "invalid_response", description="A reply without 'params': refused or read as {}."
    )
    missing_variables: Literal["empty", "keep", "invalid_response"] = Field(
        "empty",
        description="UNKNOWN (§5.3): a reply without 'variables' resets them, keeps them or fails.",
    )
    webhook_basic_auth: bool = Field(
        True, description="INFERENCE (§3.6): send app login/password as HTTP Basic on every POST."
    )

    # --- call lifecycle (§6) --------------------------------------------------------------
    inbound_first_status: Literal["INCOMING_CALL", "UP"] = Field(
        "INCOMING_CALL",
        description="UNKNOWN (§6.2); the status stays so until the first command runs.",
    )
    post_unanswered_outbound: bool = Field(
        True,
        description="UNKNOWN (§6.3): one POST with BUSY/NOANSWER/... then nothing; else silence.",
    )
    unanswered_status: dict[str, str] = Field(
        default_factory=lambda: dict(UNANSWERED_STATUS),
        description="Callee behaviour -> call_status of the unanswered POST (§6.3).",
    )
    post_cancelled_outbound: bool = Field(
        False,
        description=_doc("""UNKNOWN (§6.3, §6.4): an outbound call hung up (calls.hangup)
        while it still rings sends no POST; True sends one POST with call_status HANGUP,
        command '' and command_id 0, and nothing after it."""),
    )
    hangup_repeats_report: bool = Field(
        True,
        description=_doc("""UNKNOWN (§6.4, §5.4): a HANGUP POST with no new command outcome
        (a hang-up that lands while the app is being asked, a webhook failure) repeats the
        previous POST's command and command_id, and its command_result unless a failure
        token replaces it; False sends command '', command_id 0 and command_result '' (a
        failure's command_error is kept). variables are those of the last valid reply
        either way."""),
    )
    hangup_ended_call: bool = Field(
        False, description="UNKNOWN (§3.3): calls.hangup result for a call that already ended."
    )
    first_callid: int = Field(421889, ge=1, description="Callids increase from here.")

    # --- calls.realtime_break (§7) ---------------------------------------------------------
    break_result: str = Field("", description="UNKNOWN: command_result of the broken command.")
    break_error: str = Field("", description="UNKNOWN: command_error of the broken command.")
    break_when_idle: bool = Field(
        False,
        description=_doc("""UNKNOWN: result when nothing is breakable (awaiting the webhook,
        ringing, ended). Nothing is queued either way."""),
    )

    # --- command results (§5.5) ------------------------------------------------------------
    play_result: str = Field("0", description="INFERENCE: play, play_record, play_wav_data.")
    default_result: str = Field(
        "",
        description=_doc("""UNKNOWN: wait, wait_for_silence, send_dtmf, conference exit,
        recording start/stop, hangup_callid, and any command ended by a hang-up."""),
    )
    read_timeout_result: str = Field("TIMEOUT", description="INFERENCE: read with no entry.")
    read_barge_in: bool = Field(
        True,
        description=_doc("""INFERENCE (prompt and collection run simultaneously): a key
        pressed during the prompt stops it and counts; False drops such keys."""),
    )
    record_file_template: str = Field(
        "/tmp/callr-rec-{callid}-{n}.wav",
        description="INFERENCE: record's result, a temporary file name ({callid}, {n}).",
    )
    dialout_answered_result: str = Field(
        "ANSWER", description="INFERENCE: result on the HANGUP POST that ends a bridged dialout."
    )
    dialout_status: dict[str, str] = Field(
        default_factory=lambda: dict(DIALOUT_STATUS),
        description="INFERENCE: callee behaviour -> result of a dialout nobody answered.",
    )
    talk_detect_human: str = Field("HUMAN", description="UNKNOWN; Asterisk AMD vocabulary.")
    talk_detect_machine: str = Field(
        "MACHINE", description="UNKNOWN; talk over max_ms or through analysistime_ms."
    )
    talk_detect_unsure: str = Field("NOTSURE", description="UNKNOWN; silence or under min_ms.")
    conference_pin_error: str = Field(
        "INVALID_PIN", description="Invented: command_error after pin_max_tries wrong PINs."
    )
    error_unknown_callid: str = Field(
        "UNKNOWN_CALLID", description="Invented: hangup_callid on a callid never seen."
    )

    # --- durations (virtual seconds) ---------------------------------------------------------
    tts_seconds_per_char: float = Field(0.07, ge=0, description="TTS play time per character.")
    tts_min_seconds: float = Field(0.5, ge=0, description="Shortest TTS play time.")
    media_seconds: float = Field(3.0, ge=0, description="Play time of a numeric media id.")
    media_durations: dict[int, float] = Field(
        default_factory=dict, description="Per media id play times, overriding media_seconds."
    )
    digit_gap: float = Field(0.2, ge=0, description="Seconds between keys of one Press.")

    # --- emulator guards (not platform behaviour: they stop runaway tests) -------------------
    max_call_duration: float = Field(
        4 * 3600.0, gt=0, description="Virtual seconds after which the emulator hangs up."
    )
    max_commands: int = Field(1000, ge=1, description="Commands after which it hangs up.")

    # --- JSON-RPC (§2) ----------------------------------------------------------------------
    rpc_auth: bool = Field(
        True, description="Require credentials; failures are HTTP 401 (INFERENCE, §2.3)."
    )
    logins: dict[str, str] = Field(
        default_factory=lambda: {DEFAULT_LOGIN: DEFAULT_PASSWORD},
        description="Accepted HTTP Basic login -> password.",
    )
    api_keys: tuple[str, ...] = Field(
        (DEFAULT_API_KEY,), description="Accepted 'Authorization: Api-Key <key>' values."
    )
    rpc_error_codes: dict[str, int] = Field(
        default_factory=lambda: dict(RPC_ERROR_CODES),
        description="UNKNOWN (§2.3): numeric code per error token.",
    )
    app_types: tuple[str, ...] = Field(
        ("REALTIME10",),
        description="apps.create accepts these; calls.realtime still needs REALTIME10.",
    )
    broadcast_status: dict[str, str] = Field(
        default_factory=lambda: dict(BROADCAST_STATUS),
        description="UNKNOWN (§3.5): calls.get_status_1 value per broadcast phase.",
    )
    broadcast_status_answered: Literal["dial_status", "call_status"] = Field(
        "dial_status",
        description=_doc("""UNKNOWN (§3.5): calls.get_status_1 of an answered broadcast.
        'dial_status': the dial status ANSWER while the messages play and after the call
        ended (table keys up, done); 'call_status': the real-time call_status UP while they
        play, HANGUP after (table keys playing, ended). Before the answer and for unanswered
        broadcasts both give the same values."""),
    )
    broadcast_max_loop: int = Field(10, ge=1, description="UNKNOWN range of options.loop.")
    seed: int | None = Field(None, description="Seed of the hash generator (reproducible runs).")

    def rpc_code(self, token: str) -> int:
        """The numeric code of an error token (unlisted tokens get INTERNAL_ERROR's)."""
        return self.rpc_error_codes.get(token, self.rpc_error_codes.get("INTERNAL_ERROR", -32603))
