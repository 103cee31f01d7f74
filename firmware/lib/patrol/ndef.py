"""NDEF (NFC Forum) URI records and the NTAG 424 DNA SUN query parameters.

Record header byte: MB(0x80) ME(0x40) CF(0x20) SR(0x10) IL(0x08) TNF(0x07);
then type length, payload length (1 byte if SR else 4), [id length if IL],
type, [id], payload. A URI record has TNF 1 (well known), type "U", and a
payload of one prefix-code byte plus the rest of the URI.

A SUN URL carries ``e=`` (32 hex digits: encrypted PICCData) and ``c=`` (16 hex
digits: SDMMAC), as configured on our tags (NXP AN12196 SDM mirroring).
"""

from patrol.compat import const
from patrol.errors import MalformedError, TruncatedError

_TNF_WELL_KNOWN = const(0x01)
_FLAG_SR = const(0x10)
_FLAG_IL = const(0x08)
_FLAG_MB_ME = const(0xC0)
_TNF_MASK = const(0x07)
_PICC_ENC_HEX = const(32)
_SDMMAC_HEX = const(16)

# URI identifier codes (NFC Forum URI RTD), the common ones
_URI_PREFIXES = ("", "http://www.", "https://www.", "http://", "https://")


def encode_uri_message(uri):
    """One short URI record (MB|ME|SR, TNF 1) holding ``uri``, prefix-compressed."""
    code = 0
    for i in range(len(_URI_PREFIXES) - 1, 0, -1):
        if uri.startswith(_URI_PREFIXES[i]):
            code = i
            break
    rest = uri[len(_URI_PREFIXES[code]) :].encode()
    payload = bytes((code,)) + rest
    if len(payload) > 255:
        raise MalformedError("URI too long for a short record")
    return bytes((_FLAG_MB_ME | _FLAG_SR | _TNF_WELL_KNOWN, 1, len(payload))) + b"U" + payload


def parse_uri(message):
    """The URI of the first URI record in an NDEF message, or None if there is none."""
    offset = 0
    size = len(message)
    while offset < size:
        if offset + 2 > size:
            raise TruncatedError("short record header")
        flags = message[offset]
        type_len = message[offset + 1]
        offset += 2
        if flags & _FLAG_SR:
            if offset + 1 > size:
                raise TruncatedError("short record")
            payload_len = message[offset]
            offset += 1
        else:
            if offset + 4 > size:
                raise TruncatedError("short record")
            payload_len = (message[offset] << 24) | (message[offset + 1] << 16) | (message[offset + 2] << 8) | message[offset + 3]
            offset += 4
        id_len = 0
        if flags & _FLAG_IL:
            if offset + 1 > size:
                raise TruncatedError("short record")
            id_len = message[offset]
            offset += 1
        record_type = bytes(message[offset : offset + type_len])
        offset += type_len + id_len
        if offset + payload_len > size:
            raise TruncatedError("record payload runs past the message")
        payload = message[offset : offset + payload_len]
        offset += payload_len
        if (flags & _TNF_MASK) == _TNF_WELL_KNOWN and record_type == b"U" and payload_len >= 1:
            code = payload[0]
            prefix = _URI_PREFIXES[code] if code < len(_URI_PREFIXES) else ""
            return prefix + bytes(payload[1:]).decode()
    return None


def _unhex(text, digits):
    if len(text) != digits:
        raise MalformedError("wrong number of hex digits")
    try:
        return bytes.fromhex(text.lower())
    except ValueError:
        raise MalformedError("not hex")


def sun_params(uri):
    """(picc_enc 16 bytes, sdmmac 8 bytes) from a SUN URL's ``e=`` and ``c=``, or None."""
    query_at = uri.find("?")
    if query_at < 0:
        return None
    picc_enc = None
    sdmmac = None
    for part in uri[query_at + 1 :].split("&"):
        key, _, value = part.partition("=")
        if key == "e":
            picc_enc = _unhex(value, _PICC_ENC_HEX)
        elif key == "c":
            sdmmac = _unhex(value, _SDMMAC_HEX)
    if picc_enc is None or sdmmac is None:
        return None
    return picc_enc, sdmmac
