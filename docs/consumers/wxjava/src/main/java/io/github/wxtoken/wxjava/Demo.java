package io.github.wxtoken.wxjava;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import me.chanjar.weixin.common.error.WxErrorException;
import me.chanjar.weixin.cp.api.WxCpService;
import me.chanjar.weixin.mp.api.WxMpService;
import me.chanjar.weixin.mp.config.WxMpHostConfig;

/**
 * Drives WxJava through the adapter for docs/consumers/wxjava_test.go:
 *
 * <pre>java -cp '.cache/wxjava/lib/*:.cache/wxjava/build/wxtoken-wxjava.jar' io.github.wxtoken.wxjava.Demo \
 *     API_URL APP PREFIX mp|cp WECHAT_BASE_URL APPID_OR_CORPID</pre>
 *
 * (the services are built as in {@link Usage}, the README's example), then
 * reads commands from stdin, one a line: {@code call} makes WxJava's own
 * business call (getcallbackip for an Official Account, get_api_domain_ip for
 * WeCom), {@code refresh} is WxJava's forced refresh
 * ({@code getAccessToken(true)}), {@code quit} ends. Each command answers one
 * JSON line: {@code {"ok":true}}, {@code {"ok":false,"errcode":N}} (WeChat's
 * errcode) or {@code {"ok":false,"error":"..."}}. WECHAT_BASE_URL points
 * WxJava at a WeChat host through its own host configuration (the sandbox).
 * No token is printed; WxJava's logs are discarded (slf4j-nop).
 */
public final class Demo {
  interface Command {
    void run() throws WxErrorException;
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 6 || !args[3].equals("mp") && !args[3].equals("cp")) {
      System.err.println("usage: Demo API_URL APP PREFIX mp|cp WECHAT_BASE_URL APPID_OR_CORPID");
      System.exit(2);
    }
    String apiUrl = args[0], app = args[1], prefix = args[2], kind = args[3], baseUrl = args[4], id = args[5];
    Command call;
    Command refresh;
    Runnable close;
    if (kind.equals("mp")) {
      WxMpService service = Usage.officialAccount(apiUrl, app, prefix, id);
      WxtokenMpConfig config = (WxtokenMpConfig) service.getWxMpConfigStorage();
      config.setHostConfig(WxMpHostConfig.builder().apiHost(baseUrl).build());
      call = service::getCallbackIP;
      refresh = () -> service.getAccessToken(true);
      close = config.wxtoken()::close;
    } else {
      WxCpService service = Usage.weCom(apiUrl, app, prefix, id);
      WxtokenCpConfig config = (WxtokenCpConfig) service.getWxCpConfigStorage();
      config.setBaseApiUrl(baseUrl);
      call = service::getApiDomainIp;
      refresh = () -> service.getAccessToken(true);
      close = config.wxtoken()::close;
    }
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      switch (line.trim()) {
        case "call" -> out.println(run(call));
        case "refresh" -> out.println(run(refresh));
        case "quit" -> {
          close.run();
          return;
        }
        case "" -> { }
        default -> out.println("{\"ok\":false,\"error\":\"unknown command\"}");
      }
    }
    close.run();
  }

  private static String run(Command c) {
    try {
      c.run();
      return "{\"ok\":true}";
    } catch (WxErrorException e) {
      return "{\"ok\":false,\"errcode\":" + e.getError().getErrorCode() + "}";
    } catch (RuntimeException e) {
      String msg = e.getClass().getSimpleName() + ": " + e.getMessage();
      return "{\"ok\":false,\"error\":" + new com.google.gson.Gson().toJson(msg) + "}";
    }
  }
}
