package refresh_test

import (
	"testing"
	"time"

	"github.com/wxtoken/wxtoken/pkg/registry"
	"github.com/wxtoken/wxtoken/pkg/wechat/wechattest"
)

// Found by the model check's review: switching an app from classic to
// stable mode (the README's remedy for classic drift) must not itself count
// as drift. stable_token's first answer differs from the classic token
// published, which says nothing of another fetcher.
func TestModeSwitchIsNotDrift(t *testing.T) {
	b := newFakeBed(t, wechattest.Config{})
	a := b.app(appNamed("shop", registry.OfficialAccount, registry.Classic))
	mustRefreshDue(t, b.refresher("s1"))
	a.Mode = registry.Stable
	b.putItem(a)
	b.sb.Clock().Advance(time.Minute)
	rep := mustRefreshDue(t, b.refresher("s2"))
	if s := statusOf(rep, a.Name); s != "refreshed" {
		t.Fatalf("the run after the switch: %s, want refreshed", outcomeOf(rep, a.Name))
	}
	if st := b.state(a.Name); st.DriftCount != 0 {
		t.Errorf("switching to stable mode counted %d drift(s), want 0", st.DriftCount)
	}
	pub, _ := b.published(a.Name)
	b.saw(pub)
}
