// The wire format and the session rules live in UpkeepProtocolCore (no channel code); users of
// the protocol import this module and get both.
@_exported import UpkeepProtocolCore
