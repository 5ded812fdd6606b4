package registry

import "strings"

// Credential names one credential wxtoken keeps for an app: its access
// token (Ticket "") or one of its tickets. Its Key is the name the
// credential's state item ("state#" + key) and its published parameter go
// by in pkg/lease and pkg/tokenstore.
type Credential struct {
	App    string
	Ticket Ticket
}

// credentialSep separates the app from the ticket in a key; app names
// cannot contain it.
const credentialSep = "#"

// TokenLeaf is the last element of the access token's SSM parameter,
// {prefix}/{app}/access_token.
const TokenLeaf = "access_token"

// Key is "app" for the access token and "app#ticket" for a ticket.
func (c Credential) Key() string {
	if c.Ticket == "" {
		return c.App
	}
	return c.App + credentialSep + string(c.Ticket)
}

// ParameterLeaf is the last element of the credential's SSM parameter:
// access_token, jsapi_ticket, wx_card_ticket or agent_config_ticket.
func (c Credential) ParameterLeaf() string {
	if c.Ticket == "" {
		return TokenLeaf
	}
	return c.Ticket.ParameterLeaf()
}

// String is the key.
func (c Credential) String() string { return c.Key() }

// ParseCredentialKey reads a Key back.
func ParseCredentialKey(key string) Credential {
	app, ticket, _ := strings.Cut(key, credentialSep)
	return Credential{App: app, Ticket: Ticket(ticket)}
}
