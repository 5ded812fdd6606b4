package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SignRequest adds a SigV4 signature for the wxtoken API (service
// execute-api, region) to req, whose body is body. The signature carries the
// wall clock: AWS refuses a request signed more than 5 minutes away from its
// own clock. The operator command (infra/wxtoken) signs with it too.
func SignRequest(ctx context.Context, creds aws.CredentialsProvider, region string, req *http.Request, body []byte) error {
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, c, req, hex.EncodeToString(sum[:]), "execute-api", region, time.Now()); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return nil
}
