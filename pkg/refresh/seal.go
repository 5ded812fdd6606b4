package refresh

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// A token that WeChat issued but SSM refused is kept in the app's state until
// it is published (classic mode cannot afford to drop it: fetching another
// would end the published one). It is never stored in plain text: it is
// sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the app's
// secret, which only wxtoken's functions can read and whose holder could
// fetch tokens anyway. The app name and generation are bound in as
// additional data, so a sealed token cannot be replayed for another app or
// another commit. A replaced secret makes old seals unreadable, which only
// means the token is fetched again.

const sealInfo = "wxtoken pending token v1"

var errSeal = errors.New("refresh: sealed token unreadable")

func sealKey(secret, appID string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(secret), []byte(appID), sealInfo, 32)
}

func sealAEAD(secret, appID string) (cipher.AEAD, error) {
	key, err := sealKey(secret, appID)
	if err != nil {
		return nil, fmt.Errorf("refresh: seal key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("refresh: seal cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

func sealAD(app string, gen int64) []byte { return fmt.Appendf(nil, "%s#%d", app, gen) }

// seal returns token sealed for (app, gen) under the app's secret.
func seal(secret, appID, app string, gen int64, token string) (string, error) {
	aead, err := sealAEAD(secret, appID)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("refresh: seal nonce: %w", err)
	}
	out := aead.Seal(nonce, nonce, []byte(token), sealAD(app, gen))
	return base64.RawStdEncoding.EncodeToString(out), nil
}

// unseal returns the token seal sealed for (app, gen), or errSeal.
func unseal(secret, appID, app string, gen int64, sealed string) (string, error) {
	raw, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil {
		return "", errSeal
	}
	aead, err := sealAEAD(secret, appID)
	if err != nil {
		return "", err
	}
	if len(raw) < aead.NonceSize() {
		return "", errSeal
	}
	tok, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], sealAD(app, gen))
	if err != nil {
		return "", errSeal
	}
	return string(tok), nil
}
