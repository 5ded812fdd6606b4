package io.github.wxtoken.wxjava;

// README begin
import io.github.wxtoken.wxjava.WxtokenClient;
import io.github.wxtoken.wxjava.WxtokenCpConfig;
import io.github.wxtoken.wxjava.WxtokenCpService;
import io.github.wxtoken.wxjava.WxtokenMpConfig;
import io.github.wxtoken.wxjava.WxtokenMpService;
import me.chanjar.weixin.cp.api.WxCpService;
import me.chanjar.weixin.mp.api.WxMpService;

/** WxJava's services with their access tokens from wxtoken (docs/consumers/wxjava). */
final class Usage {
  // An Official Account (weixin-java-mp): wxtoken keeps its token as `app`.
  static WxMpService officialAccount(String apiUrl, String app, String prefix, String appId) {
    WxtokenClient wxtoken = WxtokenClient.builder(apiUrl, app).prefix(prefix).build();
    WxMpService service = new WxtokenMpService(); // getAccessToken(true) asks wxtoken too
    service.setWxMpConfigStorage(new WxtokenMpConfig(wxtoken, appId)); // no AppSecret
    return service; // service.getCallbackIP(), ...: a 40001 costs one refresh request, one retry
  }

  // A WeCom application (weixin-java-cp).
  static WxCpService weCom(String apiUrl, String app, String prefix, String corpId) {
    WxtokenClient wxtoken = WxtokenClient.builder(apiUrl, app).prefix(prefix).build();
    WxCpService service = new WxtokenCpService();
    service.setWxCpConfigStorage(new WxtokenCpConfig(wxtoken, corpId)); // no corpsecret
    return service;
  }
}
// README end
